// Package postgres is tapline's Postgres edge proxy. Agents connect with the wire
// protocol, name a target as their database and present an OIDC token as their
// password; the proxy verifies it, logs in to the target with the gateway's own
// credentials, and relays every message in both directions, recording each one
// (CLIENT messages before they are forwarded, in strict mode) as a frame.
//
// Messages are framed by reading the 5-byte header and forwarded as raw bytes;
// only the few the gateway acts on (startup, authentication, BackendKeyData) are
// decoded. Memory per connection is bounded by the largest message allowed.
package postgres

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/edgelimit"
)

// Defaults for Config.
const (
	// DefaultMaxMessageBytes bounds one message (16 MiB): far above ordinary
	// statements and COPY chunks, and with the connection caps in edgelimit it
	// bounds the gateway's memory.
	DefaultMaxMessageBytes = 16 << 20
	DefaultStartupTimeout  = 30 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	// minMaxMessageBytes keeps room for a startup exchange and ordinary queries.
	minMaxMessageBytes = 8 << 10
	endTimeout         = 15 * time.Second
	maxDenialsInFlight = 256
)

// TokenVerifier checks an agent's token; *auth.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (auth.Identity, error)
}

// Config configures a Server.
type Config struct {
	// TLS is the listener's certificate. Nil: SSLRequest is answered 'N'.
	TLS *tls.Config
	// AllowPlaintext accepts the token without TLS, and only on a loopback listener (dev).
	AllowPlaintext bool
	// MaxMessageBytes is the largest protocol message accepted in either direction,
	// header included (default 16 MiB). It bounds memory per connection.
	MaxMessageBytes int
	Targets         []Target
	Verifier        TokenVerifier
	Recorder        Recorder
	Logger          *slog.Logger
	// Registerer takes the proxy's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// StartupTimeout bounds the startup and login phases, agent and target side (default 30s).
	StartupTimeout time.Duration
	// DialTimeout bounds connecting to a target (default 10s).
	DialTimeout time.Duration
	// Limits caps handshakes and sessions and sets each session's deadline;
	// shared with the gateway's other edges. Nil: edgelimit defaults.
	Limits *edgelimit.Limiter
}

// Server accepts agent connections on one or more listeners.
type Server struct {
	cfg     Config
	targets map[string]*Target
	policy  auth.Policy
	keys    *keyTable
	metrics *metrics
	log     *slog.Logger
	conns   sync.WaitGroup
	limits  *edgelimit.Limiter
	denials *edgelimit.Background // recording denials off the accept path
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Verifier == nil || cfg.Recorder == nil {
		return nil, errors.New("postgres: Verifier and Recorder are required")
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxMessageBytes < minMaxMessageBytes {
		return nil, fmt.Errorf("postgres: max message size %d is below the minimum of %d bytes", cfg.MaxMessageBytes, minMaxMessageBytes)
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = DefaultStartupTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Limits == nil {
		l, err := edgelimit.New(edgelimit.Config{}, nil)
		if err != nil {
			return nil, err
		}
		cfg.Limits = l
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("postgres: metrics: %w", err)
	}
	if cfg.TLS != nil {
		cfg.TLS = cfg.TLS.Clone()
		if !slices.Contains(cfg.TLS.NextProtos, alpnPostgres) {
			cfg.TLS.NextProtos = append(cfg.TLS.NextProtos, alpnPostgres)
		}
	}
	s := &Server{cfg: cfg, targets: map[string]*Target{}, keys: newKeyTable(), metrics: m, log: cfg.Logger.With("proxy", "postgres"),
		limits: cfg.Limits, denials: edgelimit.NewBackground(maxDenialsInFlight)}
	groups := map[string][]string{}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if _, dup := s.targets[t.Name]; dup {
			return nil, fmt.Errorf("postgres: target %q defined twice", t.Name)
		}
		s.targets[t.Name] = t
		groups[t.Name] = t.Groups
	}
	s.policy = auth.NewPolicy(groups)
	return s, nil
}

// Serve accepts connections on ln until ctx is done, then closes ln, ends live
// sessions with reason "gateway shutdown" and returns once they are recorded.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	plaintext := s.cfg.AllowPlaintext && isLoopbackAddr(ln.Addr())
	if s.cfg.AllowPlaintext && !plaintext {
		s.log.Warn("allow_plaintext ignored: listener is not on a loopback address", "addr", ln.Addr().String())
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	s.log.Info("postgres proxy listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil, "plaintext_allowed", plaintext)
	var err error
	var backoff time.Duration
	for {
		var conn net.Conn
		conn, err = ln.Accept()
		if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			// Out of file descriptors and the like: wait and retry, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		if err != nil {
			break
		}
		backoff = 0
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.serveConn(ctx, conn, plaintext)
		}()
	}
	s.conns.Wait()
	s.denials.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("postgres: accept: %w", err)
}

func isLoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// conn is one agent connection before the relay starts.
type conn struct {
	s         *Server
	net       net.Conn
	in        *bufio.Reader // over net once negotiated; kept for the relay so no read-ahead is lost
	remote    string
	tls       bool
	plaintext bool // loopback dev listener that accepts tokens without TLS
	// authenticated frees the pending-handshake slot once the token was checked.
	authenticated func()
	// endSession frees the session slot; nil until one was taken.
	endSession func()
	// deadline ends the session (token expiry or max length); zero: none.
	deadline       time.Time
	deadlineReason string
}

func (c *conn) fatal(code, msg string) {
	_ = c.net.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.net.Write(fatalMessage(code, msg))
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn, plaintext bool) {
	defer raw.Close()
	pending, err := s.limits.Handshake(raw.RemoteAddr())
	if err != nil {
		s.refuseEarly(raw, err)
		return
	}
	defer pending()
	c := &conn{s: s, net: raw, remote: raw.RemoteAddr().String(), plaintext: plaintext, authenticated: pending}
	defer func() {
		if c.endSession != nil {
			c.endSession()
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	// Until the relay runs (it ends sessions itself), shutdown just drops the connection.
	dropOnShutdown := context.AfterFunc(ctx, func() { raw.Close() })
	defer dropOnShutdown()
	h, err := s.negotiate(raw)
	c.net, c.tls = h.conn, h.tls
	defer c.net.Close()
	if err != nil {
		c.startupFailed(err)
		return
	}
	c.in = bufio.NewReaderSize(c.net, 32<<10)
	if h.cancel != nil {
		s.metrics.connections.WithLabelValues("cancel").Inc()
		s.serveCancel(ctx, *h.cancel, c.remote)
		return
	}
	sess, up, t := c.login(ctx, h.startup)
	if sess == nil {
		return
	}
	if !dropOnShutdown() {
		up.conn.Close()
		c.end(sess, "gateway shutdown")
		return
	}
	_ = c.net.SetDeadline(time.Time{})
	s.relay(ctx, c, sess, up, t)
}

// refuseEarly answers a connection over the pending-handshake limits before
// reading anything, as PostgreSQL does when it cannot start a backend: clients
// that sent an SSLRequest report an error during the SSL exchange, others show
// the message. Nothing is recorded: that would be work for unauthenticated peers.
func (s *Server) refuseEarly(raw net.Conn, err error) {
	s.metrics.connections.WithLabelValues("limited").Inc()
	s.log.Warn("connection refused", "client", raw.RemoteAddr().String(), "reason", err)
	_ = raw.SetDeadline(time.Now().Add(time.Second))
	_, _ = raw.Write(fatalMessage(codeTooManyConnections, "tapline: "+err.Error()))
	// Read what the client already sent before closing, so that the close is a
	// FIN, not a reset that could discard the error before the client reads it.
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(raw, 64<<10))
	}
}

// startupFailed answers a failed startup phase in the protocol's terms.
func (c *conn) startupFailed(err error) {
	var pe *ProtocolError
	var ce *clientError
	switch {
	case errors.As(err, &pe):
		c.s.metrics.connections.WithLabelValues("protocol_error").Inc()
		c.s.log.Info("protocol violation during startup", "client", c.remote, "err", err)
		c.fatal(codeProtocolViolation, "tapline: "+err.Error())
	case errors.As(err, &ce):
		c.s.metrics.connections.WithLabelValues("protocol_error").Inc()
		c.fatal(ce.code, "tapline: "+ce.msg)
	default:
		c.s.metrics.connections.WithLabelValues("abandoned").Inc()
		c.s.log.Debug("connection closed during startup", "client", c.remote, "err", err)
	}
}
