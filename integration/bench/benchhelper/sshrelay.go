package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshRelay is an SSH man in the middle built on golang.org/x/crypto/ssh that
// records nothing: it accepts any agent (no authentication), logs in to
// upstream as user with keyFile, and relays every session channel, its data,
// stderr and requests. With the gateway's ciphers on the agent's hop (AES-GCM)
// it is the floor of an SSH edge built on that library, next to scp directly.
// The host key is new at every start; its known_hosts line for listen goes to
// hostKeyOut. With a producer, every chunk of channel data, each way, is also
// produced to Kafka as a record of its bytes alone (no frame, chain or
// masking) with the gateway recorder's producer options, not waited for: the
// floor of an SSH edge on that library that sends what passes to Kafka.
func sshRelay(listen, upstream, user, keyFile, knownHostsFile, hostKeyOut string, rec *kgo.Client) error {
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
		if err := relaySSH(c, srv, upstream, cli, rec); err != nil {
			fmt.Fprintln(os.Stderr, "sshrelay:", err)
		}
	})
}

func relaySSH(c net.Conn, srv *ssh.ServerConfig, upstream string, cli *ssh.ClientConfig, rec *kgo.Client) error {
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
			relayChannel(tee(ch, rec), chReqs, tee(up, rec), upReqs)
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

// teeChannel produces every chunk read from the channel's data stream (not
// its stderr, which scp hardly uses).
type teeChannel struct {
	ssh.Channel
	rec *kgo.Client
}

func tee(ch ssh.Channel, rec *kgo.Client) ssh.Channel {
	if rec == nil {
		return ch
	}
	return teeChannel{ch, rec}
}

func (t teeChannel) Read(p []byte) (int, error) {
	n, err := t.Channel.Read(p)
	if n > 0 {
		// Produce blocks while the client's buffer is full: Kafka's pace is
		// the relay's, as the gateway's budget of unacknowledged bytes makes it.
		t.rec.Produce(context.Background(), &kgo.Record{Value: bytes.Clone(p[:n])}, func(_ *kgo.Record, err error) {
			if err != nil {
				fmt.Fprintln(os.Stderr, "sshrelay: produce:", err)
			}
		})
	}
	return n, err
}
