package main

func init() { register(notBuilt("token", "Print a token from the dev issuer")) }
