package postgres

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/ingest/edgelimit"
	"github.com/tapline/tapline/ingest/recorder"
	pgwire "github.com/tapline/tapline/schemas/postgres"
)

var errAgentGone = errors.New("connection to the agent closed")

// recordError is a failure to record a SERVER frame (the message was not sent).
type recordError struct{ err error }

func (e *recordError) Error() string { return "recording failed: " + e.err.Error() }

// agentWriter serialises everything sent to the agent. Each message is recorded
// and written under one lock, so the recorded SERVER stream is exactly, and in the
// same order as, what the agent received.
type agentWriter struct {
	mu     sync.Mutex
	conn   net.Conn
	w      *bufio.Writer
	sess   Session
	closed bool
}

func (a *agentWriter) send(kind string, msg []byte, flush bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errAgentGone
	}
	if err := a.sess.Server(kind, 0, msg); err != nil {
		return &recordError{err}
	}
	_, err := a.w.Write(msg)
	if err == nil && flush {
		err = a.w.Flush()
	}
	return err
}

// final sends msg as the last message: later sends fail. Only the first call
// writes. The write deadline also unblocks a pump stuck on an agent that stopped
// reading, so final cannot hang on the lock.
func (a *agentWriter) final(msg []byte) {
	_ = a.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	_ = a.sess.Server(pgwire.ErrorResponse, 0, msg) // recording may be what failed; best effort
	if _, err := a.w.Write(msg); err == nil {
		_ = a.w.Flush()
	}
}

// relay pumps messages between an authenticated agent and its target.
type relay struct {
	s         *Server
	sess      Session
	target    *Target
	agent     net.Conn
	agentMsgs *msgReader
	out       *agentWriter
	up        *upstream
	log       *slog.Logger

	deadline       time.Time // zero: none
	deadlineReason string

	key       cancelKey // the BackendKeyData the agent got: the real pid, the gateway's secret
	realKey   cancelKey // the target's
	keyIssued bool      // key and realKey are written by the server pump only, read after it ended
	// terminated is set before the agent's Terminate is forwarded: the target
	// closing right after is then the client's doing, whichever pump ends first.
	terminated atomic.Bool
	// targetFatal is the target's FATAL or PANIC ErrorResponse as an end reason
	// (pg_terminate_backend, a server shutdown), set before it is relayed: the
	// connection closing after it is the target's doing, whichever pump ends first.
	targetFatal atomic.Pointer[string]
}

func (s *Server) relay(ctx context.Context, c *conn, sess Session, up *upstream, t *Target) {
	r := &relay{
		s: s, sess: sess, target: t, agent: c.net, up: up,
		agentMsgs: newMsgReader(c.in, s.cfg.MaxMessageBytes, clientTypes),
		out:       &agentWriter{conn: c.net, w: bufio.NewWriterSize(c.net, 32<<10), sess: sess},
		log:       s.log.With("session", sess.ID(), "target", t.Name, "client", c.remote),
		deadline:  c.deadline, deadlineReason: c.deadlineReason,
	}
	s.metrics.connections.WithLabelValues("session").Inc()
	s.metrics.active.Inc()
	defer s.metrics.active.Dec()
	r.log.Info("session started")
	started := time.Now()
	reason := r.run(ctx)
	if r.keyIssued {
		s.keys.remove(r.key)
		if r.abnormal(reason) {
			r.cancelRunningQuery()
		}
	}
	c.end(sess, reason)
	r.log.Info("session ended", "reason", reason, "duration", time.Since(started).Round(time.Millisecond))
}

// run relays until either side ends, recording fails or ctx is done, and returns
// the reason recorded in session.end.
func (r *relay) run(ctx context.Context) string {
	defer r.agent.Close()
	defer r.up.conn.Close()
	// The target accepted the gateway's login: to the agent, that is its own.
	if err := r.out.send("AuthenticationOk", encode(&pgproto3.AuthenticationOk{}), false); err != nil {
		return r.sendFailed(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reasons := make(chan string, 2)
	go func() { reasons <- r.clientPump(ctx) }()
	go func() { reasons <- r.serverPump() }()
	pending := 2
	var reason string
	deadline, stopDeadline := r.deadlineTimer()
	defer stopDeadline()
	select {
	case <-deadline:
		reason = r.deadlineReason
		r.log.Info("ending session at its deadline", "reason", reason)
		r.out.final(fatalMessage(codeAdminShutdown, deadlineMessage(reason)))
	case reason = <-reasons:
		pending--
	case <-ctx.Done():
		reason = "gateway shutdown"
		r.out.final(fatalMessage(codeAdminShutdown, msgShutdown))
	case <-r.sess.Failed():
		reason = "recording failed: " + errText(r.sess.Err())
		r.log.Error("recording failed; terminating session", "err", r.sess.Err())
		r.out.final(fatalMessage(codeConnectionFailure, msgRecordingFailed))
	}
	if r.terminated.Load() && !strings.HasPrefix(reason, "recording failed") && reason != r.deadlineReason {
		reason = "client terminated"
	}
	if fatal := r.targetFatal.Load(); fatal != nil && !r.abnormal(reason) {
		reason = *fatal
	}
	// Closing both sides stops the other pump; its reason is a consequence.
	cancel()
	r.agent.Close()
	r.up.conn.Close()
	for ; pending > 0; pending-- {
		<-reasons
	}
	return reason
}

// deadlineTimer fires at the session's deadline; it never fires without one.
func (r *relay) deadlineTimer() (<-chan time.Time, func()) {
	if r.deadline.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(r.deadline))
	return t.C, func() { t.Stop() }
}

func deadlineMessage(reason string) string {
	if reason == edgelimit.ReasonMaxSessionLength {
		return "tapline: session reached the gateway's maximum session length; reconnect to continue"
	}
	return "tapline: the session's token expired; reconnect with a fresh token"
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// Bounds of one client batch: the messages read together, recorded with one
// ClientBatch (one Kafka wait in strict mode) and forwarded with one flush.
const (
	maxBatchMessages = 64
	maxBatchBytes    = 256 << 10
)

// clientBatch holds the agent's messages read together. The first message is
// the reader's buffer; the others are copied into more.
type clientBatch struct {
	msgs []recorder.Message
	more []byte
	ends []int // end offset of each further message in more
}

// readBatch reads one message, blocking, then every further message already
// complete in the read buffer, up to the bounds. It stops after a Terminate;
// a message it does not take (incomplete, malformed, too large) is left to the
// next call, so errors surface in the agent's order.
func (r *relay) readBatch(b *clientBatch) error {
	typ, msg, err := r.agentMsgs.next()
	if err != nil {
		return err
	}
	b.more, b.ends = b.more[:0], b.ends[:0]
	size := len(msg)
	for typ != 'X' && len(b.ends)+1 < maxBatchMessages {
		start := len(b.more)
		var ok bool
		if b.more, ok = r.agentMsgs.appendBuffered(b.more, maxBatchBytes-size); !ok {
			break
		}
		b.ends = append(b.ends, len(b.more))
		typ = b.more[start]
		size += len(b.more) - start
	}
	b.msgs = append(b.msgs[:0], recorder.Message{Kind: pgwire.ClientKinds[msg[0]], Payload: msg})
	start := 0
	for _, end := range b.ends {
		m := b.more[start:end]
		b.msgs = append(b.msgs, recorder.Message{Kind: pgwire.ClientKinds[m[0]], Payload: m})
		start = end
	}
	return nil
}

// clientPump reads the agent's messages in batches, records each batch and only
// then forwards it.
func (r *relay) clientPump(ctx context.Context) string {
	m := r.s.metrics
	var b clientBatch
	for {
		if err := r.readBatch(&b); err != nil {
			return r.clientReadFailed(err)
		}
		if err := r.sess.ClientBatch(ctx, b.msgs); err != nil {
			if ctx.Err() != nil {
				return "gateway shutdown"
			}
			r.log.Error("client messages not recorded; not forwarded", "messages", len(b.msgs), "first_kind", b.msgs[0].Kind, "err", err)
			r.out.final(fatalMessage(codeConnectionFailure, msgRecordingFailed))
			return "recording failed: " + err.Error()
		}
		terminate := false
		for _, msg := range b.msgs {
			m.clientMsgs.Inc()
			m.clientBytes.Add(float64(len(msg.Payload)))
			if msg.Payload[0] == 'X' {
				terminate = true
				r.terminated.Store(true)
			}
			if _, err := r.up.w.Write(msg.Payload); err != nil {
				return "target connection lost: " + err.Error()
			}
		}
		if err := r.up.w.Flush(); err != nil {
			return "target connection lost: " + err.Error()
		}
		if terminate {
			return "client terminated"
		}
	}
}

func (r *relay) clientReadFailed(err error) string {
	var pe *ProtocolError
	switch {
	case errors.Is(err, io.EOF):
		return "client disconnected"
	case errors.As(err, &pe) && pe.Oversized:
		// A limit, not a violation: say so in PostgreSQL's terms (54000).
		r.s.limits.Refused(edgelimit.LimitMessageSize)
		r.log.Warn("client message over the size limit", "err", err)
		r.out.final(fatalMessage(codeProgramLimit, "tapline: message too large: "+pe.Reason+" (the gateway's postgres.max_message_bytes)"))
		return "client message too large: " + pe.Reason
	case errors.As(err, &pe):
		r.log.Warn("protocol violation by client", "err", err)
		r.out.final(fatalMessage(codeProtocolViolation, "tapline: "+err.Error()))
		return err.Error()
	default:
		return "client connection lost: " + err.Error()
	}
}

// serverPump relays the target's messages to the agent, recording each.
func (r *relay) serverPump() string {
	m := r.s.metrics
	for {
		typ, msg, err := r.up.msgs.next()
		if err != nil {
			return r.serverReadFailed(err)
		}
		switch typ {
		case 'K':
			if msg, err = r.substituteKey(msg); err != nil {
				return r.serverReadFailed(err)
			}
		case 'E':
			r.noteFatal(msg)
		}
		if err := r.out.send(serverKind(typ, msg), msg, !r.up.msgs.completeBuffered()); err != nil {
			return r.sendFailed(err)
		}
		m.serverMsgs.Inc()
		m.serverBytes.Add(float64(len(msg)))
	}
}

func (r *relay) sendFailed(err error) string {
	var re *recordError
	if errors.As(err, &re) {
		r.log.Error("server message not recorded; not forwarded", "err", re.err)
		r.out.final(fatalMessage(codeConnectionFailure, msgRecordingFailed))
		return re.Error()
	}
	return "client disconnected"
}

func (r *relay) serverReadFailed(err error) string {
	var pe *ProtocolError
	switch {
	case errors.Is(err, io.EOF):
		return "target closed the connection"
	case errors.As(err, &pe) && pe.Oversized:
		r.log.Warn("target message over the size limit", "err", err)
		r.out.final(fatalMessage(codeProgramLimit, "tapline: the target's reply was not relayed: "+pe.Reason+" (raise postgres.max_message_bytes)"))
		return "target message too large: " + pe.Reason
	case errors.As(err, &pe):
		r.log.Warn("protocol violation by target", "err", err)
		r.out.final(fatalMessage(codeProtocolViolation, "tapline: invalid message from the target: "+pe.Reason))
		return "target protocol violation: " + pe.Reason
	default:
		return "target connection lost: " + err.Error()
	}
}

// noteFatal remembers a FATAL or PANIC from the target as the session's end
// reason; ordinary errors (severity ERROR) leave the session running.
func (r *relay) noteFatal(msg []byte) {
	var e pgproto3.ErrorResponse
	if err := pgwire.Decode(&e, msg[headerLen:]); err != nil {
		return // relayed as is; the agent's driver judges it
	}
	sev := e.SeverityUnlocalized
	if sev == "" {
		sev = e.Severity
	}
	if sev != "FATAL" && sev != "PANIC" {
		return
	}
	reason := "target ended the session: " + sev + " " + e.Code + ": " + e.Message
	r.targetFatal.Store(&reason)
}

// substituteKey replaces the target's secret in its BackendKeyData with a
// gateway-issued one that the gateway maps back when the agent sends a
// CancelRequest. The pid is the backend's own.
func (r *relay) substituteKey(msg []byte) ([]byte, error) {
	var k pgproto3.BackendKeyData
	if err := pgwire.Decode(&k, msg[headerLen:]); err != nil {
		return nil, protocolErrorf("BackendKeyData: %v", err)
	}
	if r.keyIssued {
		r.s.keys.remove(r.key)
	}
	r.realKey = cancelKey{k.ProcessID, k.SecretKey}
	r.key = r.s.keys.issue(&cancelEntry{target: r.target, real: r.realKey, sess: r.sess})
	r.keyIssued = true
	return encode(&pgproto3.BackendKeyData{ProcessID: r.key.pid, SecretKey: r.key.secret}), nil
}

// abnormal reports whether the gateway, not the agent or the target, ended the
// session (shutdown, recording failure, protocol violation, oversized reply).
func (r *relay) abnormal(reason string) bool {
	switch {
	case reason == "client terminated", reason == "client disconnected", reason == "target closed the connection",
		strings.HasPrefix(reason, "client connection lost"), strings.HasPrefix(reason, "target connection lost"),
		strings.HasPrefix(reason, "target ended the session"):
		return false
	}
	return true
}

// cancelRunningQuery stops a statement the target may still be running for a
// session the gateway ended: closing the connection alone is noticed by
// PostgreSQL only when the statement next writes. It is the gateway's own
// action, not the agent's, so it is logged, not recorded.
func (r *relay) cancelRunningQuery() {
	ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.DialTimeout)
	defer cancel()
	e := &cancelEntry{target: r.target, real: r.realKey, sess: r.sess}
	if err := r.s.forwardCancel(ctx, e); err != nil {
		r.log.Warn("could not cancel the target's running statement", "err", err)
	}
}
