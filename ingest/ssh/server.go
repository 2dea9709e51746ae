// Package sshproxy is tapline's SSH edge proxy. Agents connect with an OIDC token
// as the password (or keyboard-interactive answer) and the target named in the SSH
// user name; the gateway logs in to the target with its own key, relays every
// channel, request and byte, and records each as a frame before (agent→target) or
// while (target→agent) forwarding it.
package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/edgelimit"
)

// maxDenialsInFlight bounds denials being recorded at once.
const maxDenialsInFlight = 256

// TokenVerifier checks an agent's token; *auth.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (auth.Identity, error)
}

// Options configure a Server.
type Options struct {
	Config   Config
	DataDir  string // where a generated host key is kept
	Targets  []Target
	Verifier TokenVerifier
	Policy   auth.Policy
	Recorder Recorder
	Logger   *slog.Logger
	// Registerer receives the tapline_ssh_* metrics (nil: not exported).
	Registerer prometheus.Registerer
	// Limits caps handshakes, sessions and channels and sets each session's
	// deadline; shared with the gateway's other edges. Nil: edgelimit defaults.
	Limits *edgelimit.Limiter
}

// Server accepts agents' SSH connections and proxies them to targets.
type Server struct {
	cfg      Config
	hostKey  ssh.Signer
	targets  map[string]*resolvedTarget
	verifier TokenVerifier
	policy   auth.Policy
	rec      Recorder
	log      *slog.Logger
	m        *metrics
	limits   *edgelimit.Limiter
	denials  *edgelimit.Background // recording denials off the authentication path
}

// resolvedTarget is a Target with its credentials loaded.
type resolvedTarget struct {
	Target
	auth []ssh.AuthMethod
}

// New validates the configuration, loads (or creates) the host key and the targets'
// credentials.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	if err := cfg.fillDefaults(); err != nil {
		return nil, err
	}
	if opts.Verifier == nil || opts.Recorder == nil {
		return nil, errors.New("ssh: a token verifier and a recorder are required")
	}
	hostKey, err := loadHostKey(cfg.HostKey, opts.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, hostKey: hostKey, targets: make(map[string]*resolvedTarget, len(opts.Targets)),
		verifier: opts.Verifier, policy: opts.Policy, rec: opts.Recorder, log: opts.Logger,
		limits: opts.Limits, denials: edgelimit.NewBackground(maxDenialsInFlight),
	}
	if s.limits == nil {
		if s.limits, err = edgelimit.New(edgelimit.Config{}, nil); err != nil {
			return nil, err
		}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("proxy", "ssh")
	if s.m, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	for _, t := range opts.Targets {
		methods, err := t.upstreamAuth()
		if err != nil {
			return nil, err
		}
		s.targets[t.Name] = &resolvedTarget{Target: t, auth: methods}
	}
	return s, nil
}

// HostKey is the public key agents should put in their known_hosts.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// ListenAndServe listens on Config.Listen and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ssh: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx is done, then ends live sessions
// ("gateway shutdown") and returns once they are recorded as ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.Info("SSH proxy listening", "addr", ln.Addr().String(), "host_key", ssh.FingerprintSHA256(s.HostKey()))
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer s.denials.Wait()
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("ssh: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, nc)
		}()
	}
}

// handle runs one agent connection: handshake and admission, then the proxy.
func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	pending, err := s.limits.Handshake(nc.RemoteAddr())
	if err != nil {
		s.refuseEarly(nc, err)
		return
	}
	defer pending()
	a := &admission{srv: s, ctx: ctx, log: s.log.With("client", nc.RemoteAddr().String()), authenticated: pending}
	defer a.endSession()
	deadline := time.Now().Add(s.cfg.AuthTimeout)
	nc.SetDeadline(deadline)
	// A shutdown must not wait for handshakes to time out.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	conn, version := nc, ""
	if len(s.cfg.Ciphers) == 0 {
		conn, version = readClientVersion(nc, deadline)
	}
	down, chans, reqs, err := ssh.NewServerConn(conn, a.serverConfig(version))
	stopped := !stop()
	if err == nil && stopped {
		down.Close()
		err = errors.New("gateway shutdown")
	}
	if err != nil {
		a.abandon(err)
		return
	}
	nc.SetDeadline(time.Time{})
	s.m.connections.WithLabelValues(resultSession).Inc()
	s.m.active.Inc()
	defer s.m.active.Dec()
	pc := newProxyConn(a, down)
	pc.run(ctx, chans, reqs)
}

// refuseEarly turns away a connection over the pending-handshake limits before
// the SSH version exchange, as OpenSSH's MaxStartups does, with a line saying
// why (RFC 4253 lets a server send lines before its version string).
func (s *Server) refuseEarly(nc net.Conn, err error) {
	s.m.connections.WithLabelValues(resultLimited).Inc()
	s.log.Warn("connection refused", "client", nc.RemoteAddr().String(), "reason", err)
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(nc, "tapline: %v\r\n", err)
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
	}
}
