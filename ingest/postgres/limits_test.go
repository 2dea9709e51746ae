package postgres

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/ingest/edgelimit"
)

func limiter(t *testing.T, cfg edgelimit.Config) *edgelimit.Limiter {
	t.Helper()
	l, err := edgelimit.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFor polls cond (a gateway-side count) with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A session ends when its token expires, with the reason recorded, and the
// agent is told why.
func TestSessionEndsWhenTokenExpires(t *testing.T) {
	exp := time.Now().Add(1500 * time.Millisecond)
	h := newHarness(t, func(c *Config) {
		c.Verifier = fakeVerifier{"short": {Issuer: "https://idp", Subject: "alice", Groups: []string{"dba"}, Expiry: exp}}
	})
	c := h.dial(t)
	if _, ok := c.login("app", "short").(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("login failed")
	}
	c.untilReady()
	e := c.fatalError()
	if e.Code != codeAdminShutdown || !strings.Contains(e.Message, "token expired") {
		t.Fatalf("got %s %q", e.Code, e.Message)
	}
	if time.Now().Before(exp) {
		t.Fatal("session ended before the token expired")
	}
	if r := h.rec.session(t, 0).waitEnd(t); r != edgelimit.ReasonTokenExpired {
		t.Fatalf("end reason %q, want %s", r, edgelimit.ReasonTokenExpired)
	}
}

func TestSessionEndsAtMaxSessionLength(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Verifier = fakeVerifier{"long": {Issuer: "https://idp", Subject: "alice", Groups: []string{"dba"}, Expiry: time.Now().Add(time.Hour)}}
		c.Limits = limiter(t, edgelimit.Config{MaxSessionLength: time.Second})
	})
	c := h.dial(t)
	if _, ok := c.login("app", "long").(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("login failed")
	}
	c.untilReady()
	if e := c.fatalError(); !strings.Contains(e.Message, "maximum session length") {
		t.Fatalf("got %s %q", e.Code, e.Message)
	}
	if r := h.rec.session(t, 0).waitEnd(t); r != edgelimit.ReasonMaxSessionLength {
		t.Fatalf("end reason %q", r)
	}
}

// One identity cannot take every connection: over its limit it is refused with
// 53300 too_many_connections, and the refusal is recorded.
func TestConnectionsPerIdentityLimited(t *testing.T) {
	lim := limiter(t, edgelimit.Config{MaxConnectionsPerIdentity: 1})
	h := newHarness(t, func(c *Config) { c.Limits = lim })
	first := h.dial(t)
	if _, ok := first.login("app", "good").(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("first login failed")
	}
	first.untilReady()
	second := h.dial(t)
	e, ok := second.login("app", "good").(*pgproto3.ErrorResponse)
	if !ok || e.Code != codeTooManyConnections || !strings.Contains(e.Message, "too many sessions for alice") {
		t.Fatalf("second session of alice: %#v", e)
	}
	waitFor(t, "the denial to be recorded", func() bool { return h.rec.denialCount() == 1 })
	h.rec.mu.Lock()
	if !strings.Contains(h.rec.denials[0], "too many sessions") {
		t.Errorf("recorded denial %q", h.rec.denials[0])
	}
	h.rec.mu.Unlock()
	// Another identity is not affected; alice can connect again once her session ended.
	other := h.dial(t)
	if m := other.login("app", "other"); m == nil {
		t.Fatal("no answer for bob")
	}
	first.send(&pgproto3.Terminate{})
	h.rec.session(t, 0).waitEnd(t)
	waitFor(t, "the session slot to be freed", func() bool { return lim.Sessions() == 0 })
	third := h.dial(t)
	if _, ok := third.login("app", "good").(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("alice refused after her session ended")
	}
}

// Connections that have not authenticated are capped; the connection over the
// cap is answered 53300 before the gateway reads anything. The slots are held by
// connections this test controls, and the gateway's count is checked before the
// refused client connects, so the outcome does not depend on timing.
func TestPendingHandshakesCapped(t *testing.T) {
	lim := limiter(t, edgelimit.Config{MaxPendingHandshakes: 2, MaxPendingPerSource: -1})
	h := newHarness(t, func(c *Config) { c.Limits = lim; c.StartupTimeout = 5 * time.Minute })
	hold := []*client{h.dial(t), h.dial(t)}
	waitFor(t, "two pending handshakes", func() bool { return lim.Pending() == 2 })
	over := h.dial(t)
	e := over.fatalError()
	if e.Code != codeTooManyConnections || !strings.Contains(e.Message, "too many unauthenticated connections") {
		t.Fatalf("over the cap: %s %q", e.Code, e.Message)
	}
	// Authenticating frees a slot.
	if _, ok := hold[0].login("app", "good").(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("held connection could not log in")
	}
	waitFor(t, "one pending handshake", func() bool { return lim.Pending() == 1 })
	next := h.dial(t)
	if _, ok := next.login("app", "other").(*pgproto3.ErrorResponse); !ok {
		t.Fatal("want bob's policy denial, i.e. a connection that got as far as its token")
	}
}

func TestPendingHandshakesCappedPerSource(t *testing.T) {
	lim := limiter(t, edgelimit.Config{MaxPendingPerSource: 1})
	h := newHarness(t, func(c *Config) { c.Limits = lim; c.StartupTimeout = 5 * time.Minute })
	h.dial(t)
	waitFor(t, "one pending handshake", func() bool { return lim.Pending() == 1 })
	e := h.dial(t).fatalError()
	if e.Code != codeTooManyConnections || !strings.Contains(e.Message, "from 127.0.0.1") {
		t.Fatalf("second from 127.0.0.1: %s %q", e.Code, e.Message)
	}
}

// A refused client that already sent its SSLRequest still reads the refusal: the
// gateway closes with a FIN after reading, not a reset.
func TestPendingRefusalReachesClientThatSentData(t *testing.T) {
	lim := limiter(t, edgelimit.Config{MaxPendingHandshakes: 1})
	h := newHarness(t, func(c *Config) { c.Limits = lim; c.StartupTimeout = 5 * time.Minute })
	h.dial(t)
	waitFor(t, "one pending handshake", func() bool { return lim.Pending() == 1 })
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil { // SSLRequest
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil || len(b) == 0 || b[0] != 'E' || !strings.Contains(string(b), "53300") {
		t.Fatalf("read %q, %v", b, err)
	}
}
