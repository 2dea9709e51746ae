package main

import (
	"io"
	"net"
)

// tcpRelay relays every connection accepted on listen to upstream, bytes
// copied each way by a goroutine of its own, nothing parsed or recorded: the
// floor of a Go proxy's cost, next to pgbouncer (C, libevent) as a baseline
// for the Postgres gateway.
func tcpRelay(listen, upstream string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relayConn(c, upstream)
	}
}

func relayConn(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, u)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}
