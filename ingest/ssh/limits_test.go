package sshproxy

import (
	"bufio"
	"errors"
	sshproto "github.com/tapline/tapline/schemas/ssh"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/ingest/edgelimit"
)

func withLimits(t *testing.T, cfg edgelimit.Config) (*edgelimit.Limiter, func(*harness, *Options)) {
	t.Helper()
	l, err := edgelimit.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l, func(_ *harness, o *Options) { o.Limits = l }
}

// A session ends when its token expires: the agent is told on stderr and the
// recorded end reason says so.
func TestSSHSessionEndsWhenTokenExpires(t *testing.T) {
	exp := time.Now().Add(1500 * time.Millisecond)
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Verifier = fakeVerifier{tokenOps: {Issuer: "https://idp.example", Subject: "alice", Groups: []string{"ops"}, Expiry: exp}}
	})
	c := h.mustDial("box", tokenOps)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	sess.Stderr = &stderr
	if err := sess.Start("sink"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err == nil {
		t.Fatal("session outlived its token")
	}
	if time.Now().Before(exp) {
		t.Fatal("session ended before the token expired")
	}
	if !strings.Contains(stderr.String(), "token expired") {
		t.Errorf("agent stderr %q", stderr.String())
	}
	if r := h.rec.lastSession(t).waitEnd(t); r != edgelimit.ReasonTokenExpired {
		t.Errorf("end reason %q, want %s", r, edgelimit.ReasonTokenExpired)
	}
}

func TestSSHSessionEndsAtMaxSessionLength(t *testing.T) {
	_, lim := withLimits(t, edgelimit.Config{MaxSessionLength: time.Second})
	h := newHarness(t, lim, func(_ *harness, o *Options) {
		o.Verifier = fakeVerifier{tokenOps: {Issuer: "https://idp.example", Subject: "alice", Groups: []string{"ops"}, Expiry: time.Now().Add(time.Hour)}}
	})
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	if err := sess.Start("sink"); err != nil {
		t.Fatal(err)
	}
	_ = sess.Wait()
	if r := h.rec.lastSession(t).waitEnd(t); r != edgelimit.ReasonMaxSessionLength {
		t.Errorf("end reason %q", r)
	}
}

// Channels per connection are capped: the one over the cap fails to open with
// "resource shortage", which is recorded; closing one lets the next open.
func TestSSHChannelsPerConnectionCapped(t *testing.T) {
	_, lim := withLimits(t, edgelimit.Config{MaxChannelsPerConnection: 2})
	h := newHarness(t, lim)
	c := h.mustDial("box", tokenOps)
	var open []*ssh.Session
	for range 2 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	_, err := c.NewSession()
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage || !strings.Contains(oe.Message, "too many channels") {
		t.Fatalf("third channel: %v, want resource shortage", err)
	}
	rec := h.rec.lastSession(t)
	waitFor(t, func() bool {
		for _, f := range rec.snapshot() {
			if f.kind == sshproto.ChannelOpenFailure && strings.Contains(string(f.payload), "too many channels") {
				return true
			}
		}
		return false
	})
	open[0].Close()
	// The gateway frees the slot when its relay of the channel ends.
	waitFor(t, func() bool {
		s, err := c.NewSession()
		if err != nil {
			return false
		}
		s.Close()
		return true
	})
}

// One identity cannot take every session; the refusal is explained and recorded.
func TestSSHConnectionsPerIdentityCapped(t *testing.T) {
	_, lim := withLimits(t, edgelimit.Config{MaxConnectionsPerIdentity: 1})
	h := newHarness(t, lim)
	h.mustDial("box", tokenOps)
	c, banner, err := h.dial("box", tokenOps)
	if err == nil {
		c.Close()
		t.Fatal("second session of alice admitted")
	}
	if !strings.Contains(banner, "too many sessions for alice") {
		t.Errorf("banner %q", banner)
	}
	waitFor(t, func() bool { return h.rec.denialCount() == 1 })
	if d := h.rec.lastDenial(t); !strings.Contains(d.reason, "too many sessions") {
		t.Errorf("recorded reason %q", d.reason)
	}
}

// Unauthenticated connections are capped. The slot is held by a connection this
// test controls and counted by the gateway before the refused client dials.
func TestSSHPendingHandshakesCapped(t *testing.T) {
	l, lim := withLimits(t, edgelimit.Config{MaxPendingHandshakes: 1})
	h := newHarness(t, lim)
	hold, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	waitFor(t, func() bool { return l.Pending() == 1 })
	conn, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(line, "too many unauthenticated connections") {
		t.Fatalf("over the cap the gateway said %q", line)
	}
	// The Go client sees the connection refused, not a session.
	if c, _, err := h.dial("box", tokenOps); err == nil {
		c.Close()
		t.Fatal("SSH session admitted over the pending cap")
	}
	hold.Close()
	waitFor(t, func() bool { return l.Pending() == 0 })
	h.mustDial("box", tokenOps)
}
