// Package httpproxy is tapline's HTTP edge proxy. Agents call
// https://GATEWAY/... with their OIDC token as `Authorization: Bearer`; the
// proxy verifies it, picks the target by host name (<target>.<base_domain>) or
// path prefix (/<target>/...), forwards the request with the target's own
// credentials (the agent's token never leaves the gateway), and records every
// request and response, streamed bodies and WebSocket messages included, as
// frames (schemas/http). In strict mode the request head and each request body
// chunk reach the target only after Kafka acknowledged them.
//
// A recorded session is one agent connection to one target (per identity): its
// exchanges are numbered from 1 in the frames' channel, so the concurrent
// streams of an HTTP/2 connection stay apart.
package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/edgelimit"
	"github.com/tapline/tapline/schemas"
)

// TokenVerifier checks an agent's token; *auth.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (auth.Identity, error)
}

// Options configure a Server.
type Options struct {
	Config   Config
	TLS      *tls.Config // nil: plain HTTP (AllowPlaintext on loopback only)
	Targets  []Target
	Verifier TokenVerifier
	// Policy decides who may use which target; it holds every target of the
	// gateway, so naming a Postgres target over HTTP says so.
	Policy     auth.Policy
	Recorder   Recorder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Limits     *edgelimit.Limiter
	LookupEnv  func(string) (string, bool)
	// Outbound, when set, adjusts each request to a target after the
	// gateway's own changes (the Kubernetes edge adds headers for the
	// identity); an error refuses the request with its message.
	Outbound func(target string, out *http.Request, id auth.Identity) error
	// Dialect, when set, names the protocol built on HTTP a target speaks
	// (nil: plain HTTP): see Dialect.
	Dialect func(target string) *Dialect
}

// Server is the HTTP edge.
type Server struct {
	cfg       Config
	tls       *tls.Config
	upstreams map[string]*upstream
	verifier  TokenVerifier
	policy    auth.Policy
	rec       Recorder
	log       *slog.Logger
	m         *metrics
	limits    *edgelimit.Limiter
	denials   *edgelimit.Background
	conns     sync.Map // net.Conn → *agentConn
	ends      pending  // session ends being recorded
	outbound  func(target string, out *http.Request, id auth.Identity) error
	dialects  func(target string) *Dialect
}

// pending counts work that Serve waits for on its way out. Unlike a
// WaitGroup, adding while Serve waits is allowed: connection hooks still run
// while the server closes.
type pending struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (p *pending) add() {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
}

func (p *pending) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 && p.zero != nil {
		p.zero.Broadcast()
	}
}

func (p *pending) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.zero == nil {
		p.zero = sync.NewCond(&p.mu)
	}
	for p.n > 0 {
		p.zero.Wait()
	}
}

// New validates the options and builds the target transports.
func New(o Options) (*Server, error) {
	if o.Verifier == nil || o.Recorder == nil {
		return nil, errors.New("http: Verifier and Recorder are required")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	o.Config.fillDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LookupEnv == nil {
		o.LookupEnv = func(string) (string, bool) { return "", false }
	}
	if o.Limits == nil {
		l, err := edgelimit.New(edgelimit.Config{}, nil)
		if err != nil {
			return nil, err
		}
		o.Limits = l
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("http: metrics: %w", err)
	}
	s := &Server{cfg: o.Config, tls: o.TLS, upstreams: map[string]*upstream{}, verifier: o.Verifier, policy: o.Policy,
		rec: o.Recorder, log: o.Logger.With("proxy", "http"), m: m, limits: o.Limits,
		denials: edgelimit.NewBackground(maxDenialsInFlight), outbound: o.Outbound, dialects: o.Dialect}
	for i := range o.Targets {
		t := &o.Targets[i]
		if _, dup := s.upstreams[t.Name]; dup {
			return nil, fmt.Errorf("http: target %q defined twice", t.Name)
		}
		if s.upstreams[t.Name], err = newUpstream(t, &s.cfg, o.LookupEnv); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Serve accepts agents on ln until ctx is done, then stops taking requests,
// ends live sessions with reason "gateway shutdown" and returns once their
// ends are recorded (or the shutdown time is up).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	plaintext := s.tls == nil
	if plaintext && !(s.cfg.AllowPlaintext && isLoopbackAddr(ln.Addr())) {
		return errors.New("http: plain HTTP is only served on a loopback address with allow_plaintext (tokens must travel over TLS)")
	}
	srv := s.httpServer(ctx)
	s.log.Info("http proxy listening", "addr", ln.Addr().String(), "tls", !plaintext)
	errc := make(chan error, 1)
	go func() {
		if plaintext {
			errc <- srv.Serve(ln)
			return
		}
		errc <- srv.ServeTLS(ln, "", "")
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Sessions end first (their running exchanges are cut), then connections.
	s.conns.Range(func(k, v any) bool {
		v.(*agentConn).closeAll("gateway shutdown")
		return true
	})
	_ = srv.Close()
	s.ends.wait()
	s.denials.Wait()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http: serve: %w", err)
}

// httpServer serves the proxy; its connection hooks keep the sessions of
// each agent connection.
func (s *Server) httpServer(ctx context.Context) *http.Server {
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:       s.connContext,
		ConnState:         s.connState,
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	return srv
}

func (s *Server) tlsConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	c := s.tls.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

func isLoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// route finds the target a request names and the path to forward.
func (s *Server) route(r *http.Request) (target, path string) {
	if s.cfg.Routing != RoutingPath && s.cfg.BaseDomain != "" {
		host := strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if name, ok := strings.CutSuffix(host, "."+s.cfg.BaseDomain); ok && name != "" && !strings.Contains(name, ".") {
			return name, r.URL.EscapedPath()
		}
		if s.cfg.Routing == RoutingHost {
			return "", ""
		}
	}
	p := r.URL.EscapedPath()
	rest := strings.TrimPrefix(p, "/")
	name, tail, _ := strings.Cut(rest, "/")
	return name, "/" + tail
}

// ServeHTTP authenticates, routes and forwards one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := connOf(r.Context())
	if c == nil { // a server without the proxy's hooks
		c = &agentConn{s: s, remote: r.RemoteAddr}
	}
	if r.Method == http.MethodConnect {
		s.refuseConnect(w, r)
		return
	}
	name, path := s.route(r)
	token, ok := bearer(r)
	if !ok {
		s.m.requests.WithLabelValues("unauthenticated").Inc()
		s.unauthorized(w, name, "", "an OIDC token is required: send Authorization: Bearer <token> (tapline token prints one)")
		return
	}
	start := schemas.SessionStart{Target: name, ClientAddr: c.remote, Params: map[string]string{"proto": r.Proto, "host": r.Host}}
	id, err := c.verify(r.Context(), token)
	if err != nil {
		s.denyToken(w, r, start, err)
		return
	}
	c.authenticated()
	start.Issuer, start.Subject, start.Email, start.Name = id.Issuer, id.Subject, id.Email, id.Name
	start.Groups, start.TokenID, start.TokenExpiry = id.Groups, id.TokenID, id.Expiry
	up := s.upstreams[name]
	if err := s.policy.Allow(name, id); err != nil || up == nil {
		s.denyTarget(w, r, start, err)
		return
	}
	start.TargetAddr = up.address
	ls, status, msg := c.session(r.Context(), id, up, start)
	if ls == nil {
		s.m.requests.WithLabelValues("refused").Inc()
		w.Header().Set("Connection", "close")
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		s.refuse(w, name, status, msg)
		return
	}
	defer ls.exchanges.Done()
	x := &exchange{s: s, ls: ls, up: up, ch: ls.next.Add(1), path: path, id: id}
	if isWebSocket(r) {
		s.m.requests.WithLabelValues("websocket").Inc()
		x.websocket(w, r)
		return
	}
	if isUpgrade(r) {
		x.upgrade(w, r)
		return
	}
	x.forward(w, r)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// unauthorized answers 401 with the RFC 6750 challenge; code is empty when no
// token was sent at all.
func (s *Server) unauthorized(w http.ResponseWriter, target, code, desc string) {
	v := `Bearer realm="tapline"`
	if code != "" {
		v += `, error="` + code + `", error_description="` + quoteSafe(desc) + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
	s.refuse(w, target, http.StatusUnauthorized, "tapline: "+desc)
}

func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, msg)
}

func (s *Server) denyToken(w http.ResponseWriter, r *http.Request, start schemas.SessionStart, err error) {
	s.m.requests.WithLabelValues("unauthenticated").Inc()
	switch {
	case errors.Is(err, auth.ErrIssuerUnavailable):
		s.log.Warn("token not verified: identity provider unavailable", "client", start.ClientAddr, "err", err)
		w.Header().Set("Retry-After", "5")
		s.refuse(w, start.Target, http.StatusServiceUnavailable, "tapline: identity provider unavailable, try again later")
		s.recordDenial(r, start, "issuer_unavailable")
	case errors.Is(err, auth.ErrExpired):
		s.unauthorized(w, start.Target, "invalid_token", err.Error()+"; get a fresh token")
		s.recordDenial(r, start, err.Error())
	default:
		s.unauthorized(w, start.Target, "invalid_token", err.Error())
		s.recordDenial(r, start, err.Error())
	}
}

func (s *Server) denyTarget(w http.ResponseWriter, r *http.Request, start schemas.SessionStart, err error) {
	switch {
	case err == nil || errors.Is(err, auth.ErrUnknownTarget):
		s.m.requests.WithLabelValues("unknown_target").Inc()
		msg := fmt.Sprintf("tapline: unknown target %q: name it as https://<target>.<gateway domain>/... or https://<gateway>/<target>/...", start.Target)
		if err == nil {
			msg = fmt.Sprintf("tapline: target %q is not an HTTP target", start.Target)
		}
		plain(w, http.StatusNotFound, msg)
		s.recordDenial(r, start, msg)
	default:
		s.m.requests.WithLabelValues("denied").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapline", error="insufficient_scope"`)
		s.refuse(w, start.Target, http.StatusForbidden, "tapline: "+err.Error())
		s.recordDenial(r, start, err.Error())
	}
}

// recordDenial records session.denied off the request path: the refusal does
// not wait for Kafka, and goes out even when the denial cannot be recorded.
func (s *Server) recordDenial(r *http.Request, start schemas.SessionStart, reason string) {
	s.log.Info("request denied", "client", start.ClientAddr, "target", start.Target, "subject", start.Subject, "reason", reason)
	ctx := context.WithoutCancel(r.Context())
	s.denials.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, endTimeout)
		defer cancel()
		if err := s.rec.Deny(ctx, start, reason); err != nil {
			s.log.Error("denial not recorded", "client", start.ClientAddr, "target", start.Target, "err", err)
		}
	})
}

// refuseConnect answers CONNECT: the proxy forwards requests to named
// targets, not tunnels. WebSockets over HTTP/2 (RFC 8441 extended CONNECT)
// are not relayed; the server does not advertise them, so clients that
// honour SETTINGS use HTTP/1.1, and one that tries anyway is told so here.
func (s *Server) refuseConnect(w http.ResponseWriter, r *http.Request) {
	s.m.requests.WithLabelValues("refused").Inc()
	if p := r.Header.Get(":protocol"); p != "" {
		plain(w, http.StatusNotImplemented, fmt.Sprintf("tapline: %s over HTTP/2 (extended CONNECT) is not supported: connect over HTTP/1.1 (for example, offer only http/1.1 in ALPN)", p))
		return
	}
	plain(w, http.StatusMethodNotAllowed, "tapline: CONNECT tunnels are not supported: call https://<gateway>/<target>/path instead")
}
