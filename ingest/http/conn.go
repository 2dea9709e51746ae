package httpproxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/schemas"
)

type connKey struct{}

// agentConn is one agent connection: its verified tokens and its sessions.
type agentConn struct {
	s      *Server
	remote string
	net    net.Conn

	pending func() // frees the unauthenticated-handshake slot; nil once freed

	// starting serialises session starts: concurrent first requests of one
	// identity (HTTP/2 streams) share one session instead of racing to start
	// two, the second superseding the first under its running exchange.
	starting sync.Mutex

	mu       sync.Mutex
	tokens   map[string]auth.Identity
	sessions map[string]*liveSession
	closed   bool
}

func connOf(ctx context.Context) *agentConn {
	c, _ := ctx.Value(connKey{}).(*agentConn)
	return c
}

// connContext admits a new connection under the handshake limits; one over
// them is closed before anything is read.
func (s *Server) connContext(ctx context.Context, nc net.Conn) context.Context {
	c := &agentConn{s: s, remote: nc.RemoteAddr().String(), net: nc}
	release, err := s.limits.Handshake(nc.RemoteAddr())
	if err != nil {
		s.m.requests.WithLabelValues("limited").Inc()
		s.log.Warn("connection refused", "client", c.remote, "reason", err)
		nc.Close()
		return ctx
	}
	c.pending = release
	s.conns.Store(nc, c)
	return context.WithValue(ctx, connKey{}, c)
}

// connState ends a connection's sessions when it closes. A hijacked
// connection (a WebSocket) is ended by its handler.
func (s *Server) connState(nc net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	v, ok := s.conns.LoadAndDelete(nc)
	if !ok {
		return
	}
	c := v.(*agentConn)
	if st == http.StateClosed {
		c.closeAll("connection closed")
	}
}

func (c *agentConn) authenticated() {
	c.mu.Lock()
	release := c.pending
	c.pending = nil
	c.mu.Unlock()
	if release != nil {
		release()
	}
}

// verify checks a token, remembering the last few this connection sent so
// that a keep-alive agent is not verified again on every request (expiry is
// still checked each time).
func (c *agentConn) verify(ctx context.Context, token string) (auth.Identity, error) {
	c.mu.Lock()
	id, ok := c.tokens[token]
	c.mu.Unlock()
	if ok && (id.Expiry.IsZero() || time.Now().Before(id.Expiry)) {
		return id, nil
	}
	id, err := c.s.verifier.Verify(ctx, token)
	if err != nil {
		return id, err
	}
	c.mu.Lock()
	if c.tokens == nil || len(c.tokens) >= tokenCacheSize {
		c.tokens = map[string]auth.Identity{}
	}
	c.tokens[token] = id
	c.mu.Unlock()
	return id, nil
}

// liveSession is a recorded session: one identity using one target over one
// agent connection.
type liveSession struct {
	c         *agentConn
	sess      Session
	key       string
	log       *slog.Logger
	ctx       context.Context // done when the session must stop: deadline, recording failure, shutdown
	cancel    context.CancelCauseFunc
	release   func() // the edgelimit session slot
	next      atomic.Int64
	exchanges sync.WaitGroup
	endOnce   sync.Once
	reason    atomic.Pointer[string]
}

// session returns the live session for id and target on this connection,
// starting one if needed, with one more exchange counted on it. On failure it
// returns the status and message to answer.
func (c *agentConn) session(ctx context.Context, id auth.Identity, up *upstream, start schemas.SessionStart) (*liveSession, int, string) {
	key := id.Issuer + "\x00" + id.Subject + "\x00" + up.name
	if ls := c.live(key); ls != nil {
		return ls, 0, ""
	}
	c.starting.Lock()
	defer c.starting.Unlock()
	if ls := c.live(key); ls != nil { // started while this request waited
		return ls, 0, ""
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, http.StatusServiceUnavailable, "tapline: connection closing"
	}
	s := c.s
	release, err := s.limits.Session(id.Issuer+"\x00"+id.Subject, id.Subject)
	if err != nil {
		s.recordDenial(&http.Request{}, start, err.Error())
		return nil, http.StatusTooManyRequests, "tapline: " + err.Error()
	}
	sess, err := s.rec.Start(ctx, start)
	if err != nil {
		release()
		s.log.Error("session refused: recording unavailable", "client", c.remote, "target", up.name, "err", err)
		return nil, http.StatusServiceUnavailable, msgRecordingUnavailable
	}
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	ls := &liveSession{c: c, sess: sess, key: key, ctx: sctx, cancel: cancel, release: release,
		log: s.log.With("session", sess.ID(), "target", up.name, "subject", id.Subject)}
	s.m.sessions.Inc()
	deadline, reason := s.limits.Deadline(id.Expiry, time.Now())
	if !deadline.IsZero() {
		t := time.AfterFunc(time.Until(deadline), func() { ls.stop(reason) })
		context.AfterFunc(sctx, func() { t.Stop() })
	}
	go func() {
		select {
		case <-sess.Failed():
			ls.stop("recording failed: " + errString(sess.Err()))
		case <-sctx.Done():
		}
	}()
	ls.exchanges.Add(1)
	c.mu.Lock()
	if c.sessions == nil {
		c.sessions = map[string]*liveSession{}
	}
	old := c.sessions[key]
	c.sessions[key] = ls
	closedNow := c.closed
	c.mu.Unlock()
	if old != nil {
		old.stop("superseded")
	}
	if closedNow {
		ls.stop("connection closed")
	}
	return ls, 0, ""
}

// live returns the running session under key, counting one more exchange on
// it, or nil.
func (c *agentConn) live(key string) *liveSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.sessions[key]
	if ls == nil || ls.ctx.Err() != nil {
		return nil
	}
	ls.exchanges.Add(1)
	return ls
}

const msgRecordingUnavailable = "tapline: recording unavailable, request not forwarded; try again later"

func errString(err error) string {
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

// stop ends the session: running exchanges are cut, and session.end is
// recorded once they have returned.
func (ls *liveSession) stop(reason string) {
	ls.endOnce.Do(func() {
		ls.reason.Store(&reason)
		ls.cancel(errStopped{reason})
		s := ls.c.s
		s.ends.add()
		go func() {
			defer s.ends.done()
			ls.exchanges.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
			defer cancel()
			if err := ls.sess.End(ctx, reason); err != nil {
				ls.log.Warn("session end not recorded", "reason", reason, "err", err)
			}
			ls.release()
			s.m.sessions.Dec()
		}()
	})
}

type errStopped struct{ reason string }

func (e errStopped) Error() string { return "session ended: " + e.reason }

// closeAll ends every session of the connection.
func (c *agentConn) closeAll(reason string) {
	c.mu.Lock()
	c.closed = true
	all := c.sessions
	c.sessions = nil
	release := c.pending
	c.pending = nil
	c.mu.Unlock()
	if release != nil {
		release()
	}
	for _, ls := range all {
		ls.stop(reason)
	}
}
