// Package edgelimit bounds the work the gateway's edges (Postgres, SSH) do for
// clients: handshakes that have not authenticated yet, in total and per source
// address; authenticated connections, in total and per identity; and how long a
// session may last (never beyond its token's expiry). One Limiter is shared by
// every edge of a gateway, so the totals hold across protocols.
package edgelimit

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config. They leave room for busy fleets of agents while keeping
// memory bounded: each connection holds at most a few buffers plus one message.
const (
	DefaultMaxPendingHandshakes      = 256
	DefaultMaxPendingPerSource       = 32
	DefaultMaxConnections            = 2048
	DefaultMaxConnectionsPerIdentity = 64
	DefaultMaxChannelsPerConnection  = 32
)

// End reasons recorded in session.end when a session reaches its deadline.
const (
	ReasonTokenExpired     = "token_expired"
	ReasonMaxSessionLength = "max_session_length"
)

// Config is the gateway's `limits:` section. Zero values take the defaults; a
// negative value disables that limit.
type Config struct {
	// MaxSessionLength ends a session after this long even if its token is still
	// valid (0: only the token's expiry ends it).
	MaxSessionLength time.Duration `yaml:"max_session_length"`
	// MaxPendingHandshakes caps connections that have not authenticated yet.
	MaxPendingHandshakes int `yaml:"max_pending_handshakes"`
	// MaxPendingPerSource caps them per client IP address.
	MaxPendingPerSource int `yaml:"max_pending_per_source"`
	// MaxConnections caps authenticated sessions across all edges.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIdentity caps them per identity (issuer and subject).
	MaxConnectionsPerIdentity int `yaml:"max_connections_per_identity"`
	// MaxChannelsPerConnection caps open SSH channels on one connection.
	MaxChannelsPerConnection int `yaml:"max_channels_per_connection"`
	// ExpiryGrace extends each token's expiry as the verifier does (its clock
	// skew), so a token accepted at login is not ended at once.
	ExpiryGrace time.Duration `yaml:"-"`
}

func (c *Config) fillDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxPendingHandshakes, DefaultMaxPendingHandshakes)
	def(&c.MaxPendingPerSource, DefaultMaxPendingPerSource)
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxConnectionsPerIdentity, DefaultMaxConnectionsPerIdentity)
	def(&c.MaxChannelsPerConnection, DefaultMaxChannelsPerConnection)
}

// Validate reports a negative session length.
func (c *Config) Validate() error {
	if c.MaxSessionLength < 0 {
		return errors.New("limits.max_session_length: negative (0 means: until the token expires)")
	}
	return nil
}

// Limit names the limit a Refusal hit; also the metric label.
type Limit string

const (
	LimitPending          Limit = "pending_handshakes"
	LimitPendingPerSource Limit = "pending_per_source"
	LimitConnections      Limit = "connections"
	LimitConnectionsPerID Limit = "connections_per_identity"
	LimitChannelsPerConn  Limit = "channels_per_connection"
	LimitMessageSize      Limit = "message_size"
)

// Refusal is a limit reached; Error is what the agent is told.
type Refusal struct {
	Limit Limit
	msg   string
}

func (r *Refusal) Error() string { return r.msg }

// Limiter enforces Config. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu       sync.Mutex
	pending  int
	bySource map[string]int
	sessions int
	byID     map[string]int

	pendingGauge  prometheus.Gauge
	sessionsGauge prometheus.Gauge
	refusals      *prometheus.CounterVec
}

// New returns a Limiter registering its metrics with reg (nil: unregistered).
func New(cfg Config, reg prometheus.Registerer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	l := &Limiter{
		cfg: cfg, bySource: map[string]int{}, byID: map[string]int{},
		pendingGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tapline_edge_pending_handshakes",
			Help: "Connections that have not authenticated yet (all edges)."}),
		sessionsGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tapline_edge_sessions",
			Help: "Authenticated sessions (all edges)."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_edge_limit_refusals_total",
			Help: "Connections, channels and messages refused by a limit."}, []string{"limit"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.pendingGauge, l.sessionsGauge, l.refusals} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("edgelimit: metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Config returns the limits in force, defaults filled in.
func (l *Limiter) Config() Config { return l.cfg }

// Handshake admits a connection that has not authenticated yet from remote (its
// address; the port is ignored). release must be called once it authenticated
// or left; calling it again does nothing.
func (l *Limiter) Handshake(remote net.Addr) (release func(), err error) {
	src := sourceOf(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if over(l.pending, l.cfg.MaxPendingHandshakes) {
		return nil, l.refuse(LimitPending, fmt.Sprintf("too many unauthenticated connections to the gateway (limit %d); try again later", l.cfg.MaxPendingHandshakes))
	}
	if over(l.bySource[src], l.cfg.MaxPendingPerSource) {
		return nil, l.refuse(LimitPendingPerSource, fmt.Sprintf("too many unauthenticated connections from %s (limit %d); try again later", src, l.cfg.MaxPendingPerSource))
	}
	l.pending++
	l.bySource[src]++
	l.pendingGauge.Set(float64(l.pending))
	return l.once(func() {
		l.pending--
		if l.bySource[src]--; l.bySource[src] <= 0 {
			delete(l.bySource, src)
		}
		l.pendingGauge.Set(float64(l.pending))
	}), nil
}

// Session admits an authenticated session of identity (e.g. issuer and subject).
func (l *Limiter) Session(identity, display string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if over(l.sessions, l.cfg.MaxConnections) {
		return nil, l.refuse(LimitConnections, fmt.Sprintf("too many sessions on the gateway (limit %d); try again later", l.cfg.MaxConnections))
	}
	if over(l.byID[identity], l.cfg.MaxConnectionsPerIdentity) {
		return nil, l.refuse(LimitConnectionsPerID, fmt.Sprintf("too many sessions for %s (limit %d): end one first", display, l.cfg.MaxConnectionsPerIdentity))
	}
	l.sessions++
	l.byID[identity]++
	l.sessionsGauge.Set(float64(l.sessions))
	return l.once(func() {
		l.sessions--
		if l.byID[identity]--; l.byID[identity] <= 0 {
			delete(l.byID, identity)
		}
		l.sessionsGauge.Set(float64(l.sessions))
	}), nil
}

// Channel checks whether a connection with open channels may open one more.
func (l *Limiter) Channel(open int) error {
	if !over(open, l.cfg.MaxChannelsPerConnection) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refuse(LimitChannelsPerConn, fmt.Sprintf("too many channels on this connection (limit %d): close one first", l.cfg.MaxChannelsPerConnection))
}

// Refused counts a refusal by a limit enforced elsewhere (message size).
func (l *Limiter) Refused(limit Limit) { l.refusals.WithLabelValues(string(limit)).Inc() }

// Pending is the number of connections that have not authenticated yet.
func (l *Limiter) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// Sessions is the number of authenticated sessions.
func (l *Limiter) Sessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions
}

// Deadline is when a session authenticated with a token expiring at expiry must
// end, and the reason to record then: the token's expiry, or the maximum session
// length from now if that comes first. A zero expiry means none.
func (l *Limiter) Deadline(expiry, now time.Time) (time.Time, string) {
	if !expiry.IsZero() {
		expiry = expiry.Add(l.cfg.ExpiryGrace)
	}
	if l.cfg.MaxSessionLength > 0 {
		if limit := now.Add(l.cfg.MaxSessionLength); expiry.IsZero() || limit.Before(expiry) {
			return limit, ReasonMaxSessionLength
		}
	}
	return expiry, ReasonTokenExpired
}

func (l *Limiter) refuse(limit Limit, msg string) *Refusal {
	l.refusals.WithLabelValues(string(limit)).Inc()
	return &Refusal{Limit: limit, msg: msg}
}

func (l *Limiter) once(f func()) func() {
	var o sync.Once
	return func() {
		o.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			f()
		})
	}
}

// over reports whether n already reached max; a negative max is no limit.
func over(n, max int) bool { return max >= 0 && n >= max }

func sourceOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
