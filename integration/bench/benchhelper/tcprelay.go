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
	return serve(listen, func(c net.Conn) { relayConn(c, upstream) })
}

// serve hands every connection accepted on listen to handle, each in a
// goroutine of its own, until accepting fails.
func serve(listen string, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c)
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
