package main

func init() { register(notBuilt("sink", "Write processed topics to ClickHouse")) }
