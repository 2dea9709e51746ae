package main

func init() { register(notBuilt("gateway", "Run the edge proxies (Postgres, SSH) that record every frame to Kafka")) }
