package main

func init() { register(notBuilt("process", "Run the exactly-once processors (mask, stitch, audit)")) }
