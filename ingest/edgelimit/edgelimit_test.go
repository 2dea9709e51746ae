package edgelimit

import (
	"errors"
	"net"
	"testing"
	"time"
)

func addr(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }

func TestPendingHandshakesCappedInTotalAndPerSource(t *testing.T) {
	l, err := New(Config{MaxPendingHandshakes: 3, MaxPendingPerSource: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := l.Handshake(addr("10.0.0.1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Handshake(addr("10.0.0.1", 2)); err != nil {
		t.Fatal(err)
	}
	var ref *Refusal
	if _, err := l.Handshake(addr("10.0.0.1", 3)); !errors.As(err, &ref) || ref.Limit != LimitPendingPerSource {
		t.Fatalf("third from one source: %v", err)
	}
	if _, err := l.Handshake(addr("10.0.0.2", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Handshake(addr("10.0.0.3", 1)); !errors.As(err, &ref) || ref.Limit != LimitPending {
		t.Fatalf("over the total: %v", err)
	}
	r1()
	r1() // releasing twice frees one slot only
	if l.Pending() != 2 {
		t.Fatalf("pending %d after one release, want 2", l.Pending())
	}
	if _, err := l.Handshake(addr("10.0.0.3", 1)); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Handshake(addr("10.0.0.4", 1)); err == nil {
		t.Fatal("the double release freed a second slot")
	}
}

func TestSessionsCappedPerIdentityAndInTotal(t *testing.T) {
	l, err := New(Config{MaxConnections: 3, MaxConnectionsPerIdentity: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := l.Session("idp|alice", "alice")
	if _, err := l.Session("idp|alice", "alice"); err != nil {
		t.Fatal(err)
	}
	var ref *Refusal
	if _, err := l.Session("idp|alice", "alice"); !errors.As(err, &ref) || ref.Limit != LimitConnectionsPerID {
		t.Fatalf("third for alice: %v", err)
	}
	if _, err := l.Session("idp|bob", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Session("idp|carol", "carol"); !errors.As(err, &ref) || ref.Limit != LimitConnections {
		t.Fatalf("over the total: %v", err)
	}
	a1()
	if _, err := l.Session("idp|alice", "alice"); err != nil {
		t.Fatalf("alice after ending one: %v", err)
	}
}

func TestNegativeLimitDisables(t *testing.T) {
	l, _ := New(Config{MaxPendingHandshakes: -1, MaxPendingPerSource: -1, MaxChannelsPerConnection: -1}, nil)
	for i := range 1000 {
		if _, err := l.Handshake(addr("10.0.0.1", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Channel(1 << 20); err != nil {
		t.Fatal(err)
	}
}

func TestChannels(t *testing.T) {
	l, _ := New(Config{MaxChannelsPerConnection: 2}, nil)
	if l.Channel(1) != nil || l.Channel(2) == nil {
		t.Fatal("channel limit 2 not applied")
	}
}

func TestDeadlineIsTheEarlierOfExpiryAndMaxLength(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	l, _ := New(Config{}, nil)
	if d, r := l.Deadline(exp, now); !d.Equal(exp) || r != ReasonTokenExpired {
		t.Fatalf("no max: %v %s", d, r)
	}
	l, _ = New(Config{MaxSessionLength: 10 * time.Minute}, nil)
	if d, r := l.Deadline(exp, now); !d.Equal(now.Add(10*time.Minute)) || r != ReasonMaxSessionLength {
		t.Fatalf("max shorter than the token: %v %s", d, r)
	}
	l, _ = New(Config{MaxSessionLength: 2 * time.Hour}, nil)
	if d, r := l.Deadline(exp, now); !d.Equal(exp) || r != ReasonTokenExpired {
		t.Fatalf("token shorter than the max: %v %s", d, r)
	}
	if _, err := New(Config{MaxSessionLength: -time.Second}, nil); err == nil {
		t.Fatal("negative max session length accepted")
	}
}
