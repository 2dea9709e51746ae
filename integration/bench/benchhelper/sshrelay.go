package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshRelay is an SSH man in the middle built on golang.org/x/crypto/ssh that
// records nothing: it accepts any agent (no authentication), logs in to
// upstream as user with keyFile, and relays every session channel, its data,
// stderr and requests. With the gateway's ciphers on the agent's hop (AES-GCM)
// it is the floor of an SSH edge built on that library, next to scp directly.
// The host key is new at every start; its known_hosts line for listen goes to
// hostKeyOut.
func sshRelay(listen, upstream, user, keyFile, knownHostsFile, hostKeyOut string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	host, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	srv := &ssh.ServerConfig{NoClientAuth: true}
	srv.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	srv.AddHostKey(host)
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	key, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return err
	}
	hostKeys, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return err
	}
	cli := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: hostKeys}
	// Written before listening: whoever waits for the port reads it next.
	line := knownhosts.Line([]string{knownhosts.Normalize(listen)}, host.PublicKey())
	if err := os.WriteFile(hostKeyOut, []byte(line+"\n"), 0o644); err != nil {
		return err
	}
	return serve(listen, func(c net.Conn) {
		if err := relaySSH(c, srv, upstream, cli); err != nil {
			fmt.Fprintln(os.Stderr, "sshrelay:", err)
		}
	})
}

func relaySSH(c net.Conn, srv *ssh.ServerConfig, upstream string, cli *ssh.ClientConfig) error {
	defer c.Close()
	agent, chans, reqs, err := ssh.NewServerConn(c, srv)
	if err != nil {
		return err
	}
	defer agent.Close()
	go ssh.DiscardRequests(reqs)
	target, err := ssh.Dial("tcp", upstream, cli)
	if err != nil {
		return err
	}
	defer target.Close()
	var wg sync.WaitGroup
	for nc := range chans {
		up, upReqs, err := target.OpenChannel(nc.ChannelType(), nc.ExtraData())
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			up.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relayChannel(ch, chReqs, up, upReqs)
		}()
	}
	wg.Wait()
	return nil
}

// relayChannel copies data and stderr each way and passes requests on. The
// target's requests at its end (exit-status, exit-signal) follow the data it
// sent before them; once the target closed its channel and that data is
// through, the agent's channel closes too.
func relayChannel(ch ssh.Channel, chReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request) {
	defer ch.Close()
	defer up.Close()
	go forwardRequests(chReqs, up)
	go func() {
		_, _ = io.Copy(up, ch)
		_ = up.CloseWrite()
	}()
	go func() { _, _ = io.Copy(up.Stderr(), ch.Stderr()) }()
	var down sync.WaitGroup
	down.Add(2)
	go func() { defer down.Done(); _, _ = io.Copy(ch, up) }()
	go func() { defer down.Done(); _, _ = io.Copy(ch.Stderr(), up.Stderr()) }()
	var held []*ssh.Request
	for r := range upReqs {
		if r.Type == "exit-status" || r.Type == "exit-signal" {
			held = append(held, r)
			continue
		}
		forward(r, ch)
	}
	down.Wait()
	_ = ch.CloseWrite()
	for _, r := range held {
		forward(r, ch)
	}
}

func forwardRequests(reqs <-chan *ssh.Request, to ssh.Channel) {
	for r := range reqs {
		forward(r, to)
	}
}

func forward(r *ssh.Request, to ssh.Channel) {
	ok, err := to.SendRequest(r.Type, r.WantReply, r.Payload)
	if r.WantReply {
		_ = r.Reply(ok && err == nil, nil)
	}
}
