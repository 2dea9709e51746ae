package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// recFrame is one frame as the fake recorder saw it.
type recFrame struct {
	dir     schemas.Direction
	kind    string
	channel int64
	payload []byte
}

// fakeRecorder keeps sessions and denials in memory.
type fakeRecorder struct {
	mu       sync.Mutex
	startErr error
	// failClient, when set, is consulted for every CLIENT frame of new sessions.
	failClient func(kind string, payload []byte) error
	sessions   []*fakeSession
	denials    []denial
}

type denial struct {
	start  schemas.SessionStart
	reason string
}

func (r *fakeRecorder) Start(ctx context.Context, start schemas.SessionStart) (Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startErr != nil {
		return nil, r.startErr
	}
	s := &fakeSession{id: fmt.Sprintf("s%d", len(r.sessions)), start: start, failClient: r.failClient,
		ended: make(chan struct{}), failed: make(chan struct{})}
	r.sessions = append(r.sessions, s)
	return s, nil
}

func (r *fakeRecorder) Deny(ctx context.Context, start schemas.SessionStart, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.denials = append(r.denials, denial{start, reason})
	return nil
}

func (r *fakeRecorder) lastSession(t *testing.T) *fakeSession {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) == 0 {
		t.Fatal("no session recorded")
	}
	return r.sessions[len(r.sessions)-1]
}

func (r *fakeRecorder) denialCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.denials)
}

func (r *fakeRecorder) lastDenial(t *testing.T) denial {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.denials) == 0 {
		t.Fatal("no denial recorded")
	}
	return r.denials[len(r.denials)-1]
}

type fakeSession struct {
	id         string
	start      schemas.SessionStart
	failClient func(kind string, payload []byte) error

	mu        sync.Mutex
	frames    []recFrame
	endReason string
	ended     chan struct{}
	failed    chan struct{}
	failOnce  sync.Once
	err       error
}

func (s *fakeSession) ID() string { return s.id }

func (s *fakeSession) Client(ctx context.Context, kind string, channel int64, payload []byte) error {
	if s.failClient != nil {
		if err := s.failClient(kind, payload); err != nil {
			return err
		}
	}
	return s.add(schemas.Client, kind, channel, payload)
}

func (s *fakeSession) ClientBatch(ctx context.Context, msgs []recorder.Message) error {
	for _, m := range msgs {
		if err := s.Client(ctx, m.Kind, m.Channel, m.Payload); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeSession) Server(kind string, channel int64, payload []byte) error {
	return s.add(schemas.Server, kind, channel, payload)
}

func (s *fakeSession) add(dir schemas.Direction, kind string, channel int64, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ended:
		return errors.New("session already ended")
	default:
	}
	s.frames = append(s.frames, recFrame{dir, kind, channel, append([]byte(nil), payload...)})
	return nil
}

func (s *fakeSession) End(ctx context.Context, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endReason = reason
	close(s.ended)
	return nil
}

func (s *fakeSession) fail(err error) {
	s.failOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.failed)
	})
}

func (s *fakeSession) Failed() <-chan struct{} { return s.failed }

func (s *fakeSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *fakeSession) waitEnd(t *testing.T) string {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("session did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endReason
}

func (s *fakeSession) snapshot() []recFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recFrame(nil), s.frames...)
}

// fakeVerifier accepts the tokens it knows.
type fakeVerifier map[string]auth.Identity

func (v fakeVerifier) Verify(ctx context.Context, raw string) (auth.Identity, error) {
	id, ok := v[raw]
	if !ok {
		return auth.Identity{}, fmt.Errorf("%w: signature does not verify", auth.ErrInvalidToken)
	}
	return id, nil
}

// fakeTarget is an SSH server standing in for sshd in unit tests. Commands:
// "echo TEXT", "fail CODE TEXT" (TEXT on stderr), "cat" (stdin to stdout),
// "produce N" (N bytes of stdout), "sink" (never reads stdin), "count" (prints the
// number of stdin bytes). It records what it received.
type fakeTarget struct {
	addr     string
	hostKey  ssh.Signer
	produced atomic.Int64 // bytes "produce" managed to write so far

	mu       sync.Mutex
	requests []string // "type payload-len" per channel request, in arrival order
	stdin    []byte   // everything received on session channels
	globals  []string
	// sendHostKeys makes the target announce hostkeys-00@openssh.com after login.
	sendHostKeys bool
}

func startFakeTarget(t *testing.T, clientKey ssh.PublicKey) *fakeTarget {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ft := &fakeTarget{addr: ln.Addr().String(), hostKey: hk}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(clientKey.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(hk)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go ft.serve(nc, cfg)
		}
	}()
	return ft
}

func (ft *fakeTarget) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	if ft.sendHostKeys {
		conn.SendRequest("hostkeys-00@openssh.com", false, ft.hostKey.PublicKey().Marshal())
	}
	go func() {
		for req := range reqs {
			ft.mu.Lock()
			ft.globals = append(ft.globals, req.Type)
			ft.mu.Unlock()
			// Answer keepalives with success so a test can tell the reply came
			// from here (sshd answers them with failure).
			req.Reply(req.Type == "keepalive@openssh.com", []byte("from-target"))
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "fake target runs sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go ft.session(ch, creqs)
	}
}

func (ft *fakeTarget) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	started := false
	for req := range reqs {
		ft.mu.Lock()
		ft.requests = append(ft.requests, req.Type+" "+strconv.Itoa(len(req.Payload)))
		ft.mu.Unlock()
		cmd := ""
		switch req.Type {
		case "exec":
			var p struct{ Cmd string }
			ssh.Unmarshal(req.Payload, &p)
			cmd = p.Cmd
		case "shell":
			cmd = "cat"
		default:
			req.Reply(req.WantReply, nil)
			continue
		}
		req.Reply(!started, nil)
		if started {
			continue
		}
		started = true
		go func() {
			code := ft.run(ch, cmd)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ C uint32 }{code}))
			ch.Close()
		}()
	}
}

func (ft *fakeTarget) run(ch ssh.Channel, cmd string) uint32 {
	verb, arg, _ := strings.Cut(cmd, " ")
	switch verb {
	case "echo":
		fmt.Fprintln(ch, arg)
	case "fail":
		code, text, _ := strings.Cut(arg, " ")
		fmt.Fprintln(ch.Stderr(), text)
		n, _ := strconv.Atoi(code)
		return uint32(n)
	case "cat":
		buf := make([]byte, 4096)
		for {
			n, err := ch.Read(buf)
			ft.mu.Lock()
			ft.stdin = append(ft.stdin, buf[:n]...)
			ft.mu.Unlock()
			if _, werr := ch.Write(buf[:n]); werr != nil || err != nil {
				break
			}
		}
	case "produce":
		n, _ := strconv.Atoi(arg)
		chunk := make([]byte, 32<<10)
		for left := n; left > 0; {
			w, err := ch.Write(chunk[:min(left, len(chunk))])
			ft.produced.Add(int64(w))
			left -= w
			if err != nil {
				return 1
			}
		}
	case "sink":
		<-make(chan struct{})
	case "count":
		n, _ := io.Copy(io.Discard, ch)
		fmt.Fprintln(ch, n)
	default:
		fmt.Fprintf(ch.Stderr(), "unknown command %q\n", cmd)
		return 127
	}
	ch.CloseWrite()
	return 0
}

func (ft *fakeTarget) received() []byte {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]byte(nil), ft.stdin...)
}

func (ft *fakeTarget) requestLog() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]string(nil), ft.requests...)
}

func (ft *fakeTarget) globalLog() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]string(nil), ft.globals...)
}

// harness runs a proxy in front of a fake target.
type harness struct {
	t      *testing.T
	srv    *Server
	addr   string
	rec    *fakeRecorder
	target *fakeTarget
	dir    string
	// shutdown stops the proxy as the gateway does on SIGTERM.
	shutdown context.CancelFunc
}

const (
	tokenOps = "token-ops" // alice, group ops
	tokenDev = "token-dev" // bob, group dev
)

func newHarness(t *testing.T, tweak ...func(*harness, *Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	_, gwPriv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(gwPriv)
	keyFile := filepath.Join(dir, "gw_key")
	block, _ := ssh.MarshalPrivateKey(gwPriv, "")
	writeFile(t, keyFile, pem.EncodeToMemory(block))
	ft := startFakeTarget(t, gwSigner.PublicKey())
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, []byte(knownhosts.Line([]string{ft.addr}, ft.hostKey.PublicKey())+"\n"))
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(otherPriv)
	wrongHosts := filepath.Join(dir, "wrong_known_hosts")
	writeFile(t, wrongHosts, []byte(knownhosts.Line([]string{ft.addr}, otherSigner.PublicKey())+"\n"))
	emptyHosts := filepath.Join(dir, "empty_known_hosts")
	writeFile(t, emptyHosts, nil)

	box := TargetConfig{User: "tapline-target", KeyFile: keyFile, KnownHosts: knownHosts}
	fwd := box
	fwd.AllowPortForwarding, fwd.AllowAgentForwarding = true, true
	wrong, unknown := box, box
	wrong.KnownHosts, unknown.KnownHosts = wrongHosts, emptyHosts
	h := &harness{t: t, rec: &fakeRecorder{}, target: ft, dir: dir}
	opts := Options{
		DataDir: dir,
		Targets: []Target{
			{Name: "box", Address: ft.addr, SSH: box},
			{Name: "fwd", Address: ft.addr, SSH: fwd},
			{Name: "impostor", Address: ft.addr, SSH: wrong},
			{Name: "stranger", Address: ft.addr, SSH: unknown},
		},
		Verifier: fakeVerifier{
			tokenOps: {Issuer: "https://idp.example", Subject: "alice", Groups: []string{"ops"}, TokenID: "t1"},
			tokenDev: {Issuer: "https://idp.example", Subject: "bob", Groups: []string{"dev"}, TokenID: "t2"},
		},
		Policy: auth.NewPolicy(map[string][]string{
			"box": {"ops"}, "fwd": {"ops"}, "impostor": {"ops"}, "stranger": {"ops"}, "pg": {"ops"},
		}),
		Recorder: h.rec,
		Logger:   slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
	for _, f := range tweak {
		f(h, &opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	h.srv, h.addr, h.shutdown = srv, ln.Addr().String(), cancel
	return h
}

// dial connects as user with token; banner collects what the gateway announced.
func (h *harness) dial(user, token string) (*ssh.Client, string, error) {
	var mu sync.Mutex
	var banner strings.Builder
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(h.srv.HostKey()),
		BannerCallback: func(msg string) error {
			mu.Lock()
			defer mu.Unlock()
			banner.WriteString(msg)
			return nil
		},
		Timeout: 10 * time.Second,
	}
	c, err := ssh.Dial("tcp", h.addr, cfg)
	mu.Lock()
	defer mu.Unlock()
	return c, banner.String(), err
}

func (h *harness) mustDial(user, token string) *ssh.Client {
	h.t.Helper()
	c, banner, err := h.dial(user, token)
	if err != nil {
		h.t.Fatalf("dial %s: %v (banner %q)", user, err, banner)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testLog sends the proxy's log lines to the test's output.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
