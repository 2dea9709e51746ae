package main

func init() { register(notBuilt("verify", "Verify a session's hash chain, sequence and signature")) }
