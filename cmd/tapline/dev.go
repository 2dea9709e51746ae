package main

func init() { register(notBuilt("dev", "Run the whole system in one process with embedded backends")) }
