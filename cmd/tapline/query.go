package main

func init() { register(notBuilt("query", "Serve the HTTP query, replay and verify API")) }
