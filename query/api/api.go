// Package api is tapline's HTTP query API under /api/v1: session search, one
// session, its commands, its frames (NDJSON), its replay, its verification, and
// read-only SQL for auditors. Every request carries an OIDC bearer token; auditors see
// every session, everyone else only their own, and every read is logged.
//
// Mount it with New(cfg, store, verifier); a sinks/clickhouse.Store satisfies Store.
package api

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/query"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Store is what the API reads. sinks/clickhouse.Store implements it.
type Store interface {
	ListSessions(ctx context.Context, f clickhouse.SessionFilter) ([]schemas.Session, error)
	GetSession(ctx context.Context, sessionID string) (schemas.Session, error)
	Commands(ctx context.Context, f clickhouse.CommandFilter) ([]schemas.Command, error)
	Frames(ctx context.Context, sessionID string, from, to int64, fn func(*schemas.Frame) error) error
	SQL(ctx context.Context, query string, l clickhouse.Limits) (clickhouse.Rows, error)
}

// Verifier checks bearer tokens. *auth.Verifier implements it.
type Verifier interface {
	Verify(ctx context.Context, rawToken string) (auth.Identity, error)
}

// Defaults for Config.
const (
	DefaultAuditorsGroup       = "auditors"
	DefaultSQLMaxRows          = 10000
	DefaultSQLMaxExecutionTime = 30 * time.Second
	DefaultFollowPoll          = time.Second
	DefaultFollowTimeout       = time.Hour
)

// Config configures the API.
type Config struct {
	// AuditorsGroup may read every session and use SQL (default "auditors").
	AuditorsGroup string
	// TrustedGatewayKeys are the gateways' session.end signing keys. Without them
	// verify reports a signature as consistent with its embedded key, not trusted.
	TrustedGatewayKeys []ed25519.PublicKey
	// TrustedProcessorKeys are the processors' keys, which sign masked frames.
	// Without them verify reports a session with masked frames as untrusted.
	TrustedProcessorKeys []ed25519.PublicKey
	// SQLMaxRows and SQLMaxExecutionTime cap auditors' SQL; a request may ask for less.
	SQLMaxRows          int
	SQLMaxExecutionTime time.Duration
	// SQLMaxResultBytes and SQLMaxMemoryBytes bound a statement's result and the
	// memory ClickHouse may use for it (max_result_bytes, max_memory_usage; defaults
	// in package clickhouse).
	SQLMaxResultBytes int64
	SQLMaxMemoryBytes int64
	// FollowPoll is how often a followed (live) session is polled for new frames;
	// FollowTimeout ends a follow that sees no session.end.
	FollowPoll    time.Duration
	FollowTimeout time.Duration
	// Logger receives the api_access records and errors (default slog.Default()).
	Logger *slog.Logger
	// AccessLog, if set, also receives every api_access record, for a durable trail.
	AccessLog AccessLog
	// AccessLogRequired fails closed: before serving anything, a request's
	// api_access_start record must be written to AccessLog, or the request is
	// refused (503). Without it the trail fails open: a failed write is logged.
	AccessLogRequired bool
	// MaxRequests and MaxRequestsPerIdentity bound the authenticated requests in
	// progress, in total and per identity (issuer and subject); MaxFollows and
	// MaxFollowsPerIdentity bound those following a live session, which can last
	// hours. Beyond them requests get 429. Zero means the Default.
	MaxRequests            int
	MaxRequestsPerIdentity int
	MaxFollows             int
	MaxFollowsPerIdentity  int
	// SessionCookie names the web console's session cookie, which holds an ID token
	// that SessionVerifier checks; a request without a bearer token may use it.
	// Empty: bearer tokens only.
	SessionCookie   string
	SessionVerifier Verifier
}

func (c *Config) setDefaults() {
	if c.AuditorsGroup == "" {
		c.AuditorsGroup = DefaultAuditorsGroup
	}
	if c.SQLMaxRows <= 0 {
		c.SQLMaxRows = DefaultSQLMaxRows
	}
	if c.SQLMaxExecutionTime <= 0 {
		c.SQLMaxExecutionTime = DefaultSQLMaxExecutionTime
	}
	if c.FollowPoll <= 0 {
		c.FollowPoll = DefaultFollowPoll
	}
	if c.FollowTimeout <= 0 {
		c.FollowTimeout = DefaultFollowTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, l := range []struct {
		v   *int
		def int
	}{{&c.MaxRequests, DefaultMaxRequests}, {&c.MaxRequestsPerIdentity, DefaultMaxRequestsPerIdentity},
		{&c.MaxFollows, DefaultMaxFollows}, {&c.MaxFollowsPerIdentity, DefaultMaxFollowsPerIdentity}} {
		if *l.v <= 0 {
			*l.v = l.def
		}
	}
}

type server struct {
	cfg      Config
	store    Store
	auth     Verifier
	requests *limiter
	follows  *limiter
}

// New returns the API handler. It serves /api/v1/... and /healthz.
func New(cfg Config, store Store, verifier Verifier) http.Handler {
	cfg.setDefaults()
	s := &server{cfg: cfg, store: store, auth: verifier,
		requests: newLimiter("requests", cfg.MaxRequests, cfg.MaxRequestsPerIdentity),
		follows:  newLimiter("follows", cfg.MaxFollows, cfg.MaxFollowsPerIdentity)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(query.OpenAPI)
	})
	s.route(mux, "GET /api/v1/me", s.me)
	s.route(mux, "GET /api/v1/sessions", s.listSessions)
	s.route(mux, "GET /api/v1/sessions/{id}", s.getSession)
	s.route(mux, "GET /api/v1/sessions/{id}/commands", s.listCommands)
	s.route(mux, "GET /api/v1/sessions/{id}/frames", s.streamFrames)
	s.route(mux, "GET /api/v1/sessions/{id}/replay", s.replay)
	s.route(mux, "GET /api/v1/sessions/{id}/verify", s.verify)
	s.route(mux, "POST /api/v1/sql", s.sql)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint; see /api/v1/openapi.yaml")
	})
	return mux
}

// route registers an authenticated, access-logged handler.
func (s *server) route(mux *http.ServeMux, pattern string, h func(http.ResponseWriter, *http.Request, *caller)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		rec := &accessRecord{start: time.Now(), route: pattern}
		lw := &loggingWriter{ResponseWriter: w}
		defer func() { s.logAccess(r, lw, rec) }()
		c, ok := s.authenticate(lw, r)
		if !ok {
			return
		}
		rec.caller = c
		release, refusal := s.requests.acquire(c.identity())
		if refusal != "" {
			tooMany(lw, refusal)
			return
		}
		defer release()
		if !s.accessStarted(lw, r, rec) {
			return
		}
		h(lw, r.WithContext(withRecord(r.Context(), rec)), c)
	})
}
