package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"io"
	"sync"
	"time"
)

// cancelKey is a BackendKeyData pair.
type cancelKey struct{ pid, secret uint32 }

func (k cancelKey) packet() []byte {
	b := binary.BigEndian.AppendUint32([]byte{0, 0, 0, cancelPacketLen}, codeCancel)
	b = binary.BigEndian.AppendUint32(b, k.pid)
	return binary.BigEndian.AppendUint32(b, k.secret)
}

// cancelEntry is where a gateway-issued key leads: the target and its real key.
type cancelEntry struct {
	target *Target
	real   cancelKey
	sess   Session
}

// keyTable maps the BackendKeyData the gateway gave agents to the targets' real
// ones. Agents see the backend's real pid (drivers and pools pass it to
// pg_terminate_backend and match it against pg_stat_activity) but never its
// secret, so a cancel can only reach the backend of a session the gateway is
// relaying. The pid alone does not route: two targets may share one.
type keyTable struct {
	mu sync.Mutex
	m  map[cancelKey]*cancelEntry
}

func newKeyTable() *keyTable { return &keyTable{m: map[cancelKey]*cancelEntry{}} }

// issue registers e under the backend's real pid and a fresh random secret and
// returns the key.
func (t *keyTable) issue(e *cancelEntry) cancelKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		k := cancelKey{pid: e.real.pid, secret: binary.BigEndian.Uint32(b[:])}
		if _, taken := t.m[k]; !taken && k != e.real {
			t.m[k] = e
			return k
		}
	}
}

func (t *keyTable) lookup(k cancelKey) *cancelEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k]
}

func (t *keyTable) remove(k cancelKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, k)
}

// serveCancel forwards an agent's CancelRequest to the backend behind the key. Like
// PostgreSQL it never answers the requester, so a wrong key reveals nothing. The
// cancel is recorded in the session it targets (before forwarding, as any client
// message); a key that matches nothing is only logged.
func (s *Server) serveCancel(ctx context.Context, k cancelKey, remote string) {
	e := s.keys.lookup(k)
	if e == nil {
		s.metrics.cancels.WithLabelValues("unknown_key").Inc()
		s.log.Info("cancel request with unknown key", "client", remote)
		return
	}
	if err := e.sess.Client(ctx, pgwire.CancelRequest, 0, k.packet()); err != nil {
		s.metrics.cancels.WithLabelValues("not_recorded").Inc()
		s.log.Warn("cancel request not forwarded: recording failed", "session", e.sess.ID(), "err", err)
		return
	}
	if err := s.forwardCancel(ctx, e); err != nil {
		s.metrics.cancels.WithLabelValues("error").Inc()
		s.log.Warn("cancel request not delivered", "session", e.sess.ID(), "target", e.target.Name, "err", err)
		return
	}
	s.metrics.cancels.WithLabelValues("forwarded").Inc()
	s.log.Info("cancel request forwarded", "session", e.sess.ID(), "target", e.target.Name)
}

// forwardCancel sends the target's real key for e to its target.
func (s *Server) forwardCancel(ctx context.Context, e *cancelEntry) error {
	ctx, stop := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer stop()
	conn, err := s.dialTarget(ctx, e.target)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(e.real.packet()); err != nil {
		return err
	}
	// The server closes once it has processed the request; waiting for that makes the
	// cancel take effect before the agent's own connection closes, as libpq does.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, conn)
	return nil
}
