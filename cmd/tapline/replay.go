package main

func init() { register(notBuilt("replay", "Replay a recorded session")) }
