package main

func init() { register(notBuilt("sessions", "List and search recorded sessions")) }
