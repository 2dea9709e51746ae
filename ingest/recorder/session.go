package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// Session records one connection. Client (or ClientBatch) and Server may be
// called from two goroutines; frames get seq numbers, and reach Kafka, in call
// order.
type Session struct {
	r        *Recorder
	id       string
	key      []byte
	proto    schemas.Protocol
	counters directionCounters

	// mu orders frames: seq assignment, sealing and Produce happen under it,
	// so Kafka order is seq order. Promises never take it.
	mu          sync.Mutex
	nextSeq     int64
	lastHash    []byte
	sealer      schemas.Sealer
	bytesClient int64
	bytesServer int64
	ending      bool // End was called: no more protocol frames

	// st guards acknowledgement state; taken by promises and, briefly, under mu.
	st         sync.Mutex
	inflight   int           // frames produced and not yet settled
	progress   time.Time     // when inflight last became non-zero or a frame was acknowledged
	idle       chan struct{} // closed when inflight drops to 0; made on demand
	anyAcked   bool
	endAcked   bool
	live       bool // counted in the active-sessions gauge
	recovering bool // a goroutine is writing the failure session.end
	err        error
	failed     chan struct{}
	endErr     error
}

// call tracks the frames of one Client/Start/Deny call until Kafka settles them.
type call struct {
	pending int // frames not settled, plus one while the caller is still producing; under Session.st
	err     error
	done    chan struct{}
}

// ID returns the session id (a UUIDv7).
func (s *Session) ID() string { return s.id }

// Failed is closed when recording failed (or the recorder shut down): the
// proxy must terminate the connection.
func (s *Session) Failed() <-chan struct{} { return s.failed }

// Err says why Failed is closed; nil while the session records normally.
func (s *Session) Err() error {
	s.st.Lock()
	defer s.st.Unlock()
	return s.err
}

// Message is one protocol message of a ClientBatch.
type Message struct {
	Kind    string
	Channel int64
	Payload []byte
}

// Client records a message from the agent. In strict mode it returns only
// after Kafka acknowledged every fragment; in buffered mode once they are
// buffered. On error the message must not be forwarded and the connection
// must end.
func (s *Session) Client(ctx context.Context, kind string, channel int64, payload []byte) error {
	return s.ClientBatch(ctx, []Message{{Kind: kind, Channel: channel, Payload: payload}})
}

// ClientBatch records messages the agent sent back to back (a pipeline) as
// consecutive frames, in order, with no other frame between them. In strict
// mode it returns once Kafka acknowledged all of them, so a batch costs one
// wait instead of one per message. On error none of the messages may be
// forwarded and the connection must end. A bad kind rejects the whole batch
// before anything is recorded.
func (s *Session) ClientBatch(ctx context.Context, msgs []Message) error {
	ts := time.Now()
	for _, m := range msgs {
		if err := checkKind(m.Kind); err != nil {
			return err
		}
	}
	deadline := ts.Add(s.r.cfg.ProduceTimeout)
	var c *call
	if s.r.cfg.Mode == Strict {
		c = newCall()
	}
	if err := s.record(schemas.Client, msgs, ts, c, deadline); err != nil {
		return err
	}
	if c == nil {
		return nil
	}
	return s.await(ctx, c, deadline)
}

// Server records a message from the target. It returns once the frames are
// buffered, blocking while the buffer bound is reached.
func (s *Session) Server(kind string, channel int64, payload []byte) error {
	ts := time.Now()
	if err := checkKind(kind); err != nil {
		return err
	}
	return s.record(schemas.Server, []Message{{Kind: kind, Channel: channel, Payload: payload}}, ts, nil, ts.Add(s.r.cfg.ProduceTimeout))
}

// maxKindBytes is the longest kind the chain's canonical header can hold.
const maxKindBytes = 0xffff

func checkKind(kind string) error {
	switch kind {
	case "":
		return errors.New("recorder: empty frame kind")
	case schemas.KindSessionStart, schemas.KindSessionDenied, schemas.KindSessionEnd:
		return fmt.Errorf("recorder: %s is written by the recorder itself", kind)
	}
	if len(kind) > maxKindBytes {
		return fmt.Errorf("recorder: frame kind of %d bytes (at most %d)", len(kind), maxKindBytes)
	}
	return nil
}

// record produces messages, each as one frame or as consecutive fragments when
// it exceeds FragmentBytes.
func (s *Session) record(dir schemas.Direction, msgs []Message, ts time.Time, c *call, deadline time.Time) error {
	if c != nil {
		defer s.release(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Err(); err != nil {
		return err
	}
	if s.ending {
		return ErrEnded
	}
	fb := s.r.cfg.FragmentBytes
	for _, m := range msgs {
		n := max(1, (len(m.Payload)+fb-1)/fb)
		for i := range n {
			f := &schemas.Frame{
				TS: ts, Direction: dir, Kind: m.Kind, Channel: m.Channel,
				Payload:  m.Payload[min(i*fb, len(m.Payload)):min((i+1)*fb, len(m.Payload))],
				Fragment: int32(i), Final: i == n-1,
			}
			if err := s.emitLocked(f, c, deadline); err != nil {
				return err
			}
		}
	}
	return nil
}

// emitLocked seals f as the next link of the chain and hands it to the
// producer. Called with s.mu held. The payload is copied by encoding.
func (s *Session) emitLocked(f *schemas.Frame, c *call, deadline time.Time) error {
	if err := s.Err(); err != nil {
		return err
	}
	f.SessionID, f.Seq, f.Protocol, f.GatewayID = s.id, s.nextSeq, s.proto, s.r.cfg.GatewayID
	if err := s.sealer.Seal(f, s.lastHash); err != nil {
		return fmt.Errorf("recorder: seal frame: %w", err)
	}
	val, err := s.r.codec.Encode(f)
	if err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	size := int64(len(val) + recordOverhead)
	if err := s.r.budget.acquire(size, deadline, s.r.stop); err != nil {
		s.fail(err)
		return s.Err()
	}

	s.st.Lock()
	if s.err != nil {
		s.st.Unlock()
		s.r.budget.release(size)
		return s.err
	}
	if s.inflight == 0 {
		s.progress = time.Now()
	}
	s.inflight++
	if c != nil {
		c.pending++
	}
	s.st.Unlock()

	s.nextSeq++
	s.lastHash = f.Hash
	if !f.IsLifecycle() {
		if f.Direction == schemas.Client {
			s.bytesClient += int64(len(f.Payload))
		} else {
			s.bytesServer += int64(len(f.Payload))
		}
	}
	settled := frameInfo{size: size, sent: time.Now(), dir: f.Direction, payload: len(f.Payload), end: f.Kind == schemas.KindSessionEnd}
	s.r.commit.produce(&kgo.Record{Key: s.key, Value: val, Timestamp: f.TS}, c != nil,
		func(_ *kgo.Record, err error) { s.settle(settled, c, err) })
	return nil
}

type frameInfo struct {
	size    int64
	sent    time.Time
	dir     schemas.Direction
	payload int
	end     bool
}

// settle is the produce promise: it runs on the client's promise goroutine
// and must not block.
func (s *Session) settle(fi frameInfo, c *call, err error) {
	r := s.r
	r.budget.release(fi.size)
	now := time.Now()
	r.m.latency.Observe(now.Sub(fi.sent).Seconds())
	if err == nil {
		r.lastAck.Store(now.UnixNano())
		s.counters.frames[dirIndex(fi.dir)].Inc()
		s.counters.bytes[dirIndex(fi.dir)].Add(float64(fi.payload))
	} else {
		r.lastFail.Store(now.UnixNano())
	}

	s.st.Lock()
	s.inflight--
	if err == nil {
		s.anyAcked = true
		s.progress = now
	}
	mustRecover := false
	if err != nil {
		mustRecover = s.failLocked(fmt.Errorf("kafka did not take a frame: %w", err))
	}
	if c != nil {
		if err != nil && c.err == nil {
			c.err = err
		}
		c.settleOneLocked()
	}
	ended := false
	if fi.end && err == nil {
		s.endAcked = true
		ended = s.err == nil
		s.unliveLocked()
	}
	if s.inflight == 0 {
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		mustRecover = mustRecover || s.needsRecoveryLocked()
	}
	s.st.Unlock()

	if ended {
		r.finished(s)
	}
	if mustRecover {
		go r.recover(s)
	}
}

func newCall() *call { return &call{pending: 1, done: make(chan struct{})} }

func (c *call) settleOneLocked() {
	c.pending--
	if c.pending == 0 {
		close(c.done)
	}
}

// release drops the caller's hold on c once it produced everything.
func (s *Session) release(c *call) {
	s.st.Lock()
	c.settleOneLocked()
	s.st.Unlock()
}

// await waits until Kafka settled c's frames, the session failed, the
// deadline passed (which fails the session) or ctx is done.
func (s *Session) await(ctx context.Context, c *call, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.done:
	case <-s.failed:
	case <-t.C:
		s.fail(fmt.Errorf("frame not acknowledged within %s", s.r.cfg.ProduceTimeout))
	case <-ctx.Done():
		return ctx.Err()
	}
	s.st.Lock()
	defer s.st.Unlock()
	if s.err != nil {
		return s.err
	}
	return c.err // nil unless a frame failed, which also fails the session
}

// emitAndWait produces lifecycle frames back to back (each built under the
// session lock, so it can chain after the previous) and waits for Kafka.
func (s *Session) emitAndWait(ctx context.Context, frames []*schemas.Frame, more ...func() (*schemas.Frame, error)) error {
	deadline := time.Now().Add(s.r.cfg.ProduceTimeout)
	c := newCall()
	err := func() error {
		defer s.release(c)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range frames {
			if err := s.emitLocked(f, c, deadline); err != nil {
				return err
			}
		}
		for _, build := range more {
			f, err := build()
			if err != nil {
				return err
			}
			if err := s.emitLocked(f, c, deadline); err != nil {
				return err
			}
		}
		return nil
	}()
	if err == nil {
		err = s.await(ctx, c, deadline)
	}
	if err != nil && s.Err() == nil {
		// Not settled (ctx done, or a build error): whatever Kafka still does
		// with these frames, the session cannot go on.
		s.fail(err)
	}
	return err
}

// End waits for the session's outstanding frames and writes the signed
// session.end. If recording had failed, it returns that error and the
// recorder writes the session.end itself once Kafka is back. Calls after the
// first return ErrEnded.
func (s *Session) End(ctx context.Context, reason string) error {
	s.mu.Lock()
	if s.ending {
		s.mu.Unlock()
		return ErrEnded
	}
	s.ending = true
	s.mu.Unlock()

	// The end is written even if the caller stops waiting.
	done := make(chan struct{})
	go func() {
		err := s.finish(reason)
		s.st.Lock()
		s.endErr = err
		s.st.Unlock()
		close(done)
	}()
	select {
	case <-done:
		s.st.Lock()
		defer s.st.Unlock()
		return s.endErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Session) finish(reason string) error {
	deadline := time.Now().Add(s.r.cfg.ProduceTimeout)
	if err := s.waitIdle(deadline); err != nil {
		return err
	}
	return s.emitAndWait(context.Background(), nil, func() (*schemas.Frame, error) { return s.endFrameLocked(reason) })
}

// waitIdle waits until every produced frame is settled.
func (s *Session) waitIdle(deadline time.Time) error {
	s.st.Lock()
	if s.err != nil || s.inflight == 0 {
		err := s.err
		s.st.Unlock()
		return err
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.st.Unlock()
	s.r.commit.flush() // frames waiting for a round: the end need not wait for their linger
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
	case <-s.failed:
	case <-t.C:
		s.fail(fmt.Errorf("frames not acknowledged within %s", s.r.cfg.ProduceTimeout))
	}
	return s.Err()
}

// endFrameLocked builds the signed session.end chaining after the last
// sealed frame. Called with s.mu held.
func (s *Session) endFrameLocked(reason string) (*schemas.Frame, error) {
	e := &schemas.SessionEnd{
		Reason:      reason,
		LastSeq:     s.nextSeq - 1,
		Frames:      s.nextSeq,
		BytesClient: s.bytesClient,
		BytesServer: s.bytesServer,
		FinalHash:   append([]byte(nil), s.lastHash...),
	}
	if err := schemas.SignEnd(s.r.key, s.id, e); err != nil {
		return nil, fmt.Errorf("recorder: sign session.end: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("recorder: session.end payload: %w", err)
	}
	return &schemas.Frame{
		TS: time.Now(), Direction: schemas.Server, Kind: schemas.KindSessionEnd, Payload: b, Final: true, End: e,
	}, nil
}

// fail marks the session failed (first cause wins).
func (s *Session) fail(cause error) {
	s.st.Lock()
	mustRecover := s.failLocked(cause)
	s.st.Unlock()
	if mustRecover {
		go s.r.recover(s)
	}
}

// failLocked records the failure; it reports whether the caller must start
// recovery (nothing is in flight any more).
func (s *Session) failLocked(cause error) bool {
	if s.err != nil {
		return false
	}
	switch {
	case errors.Is(cause, ErrClosed), errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		s.err = cause // not Kafka's doing
	case errors.Is(cause, ErrUnavailable):
		s.err = cause
		s.r.lastFail.Store(time.Now().UnixNano())
	default:
		s.err = fmt.Errorf("%w: %w", ErrUnavailable, cause)
		s.r.lastFail.Store(time.Now().UnixNano())
	}
	close(s.failed)
	if s.live {
		s.r.m.failed.Inc()
		s.r.log.Error("session recording failed; the connection must be terminated", "session_id", s.id, "protocol", s.proto, "err", s.err)
	}
	s.unliveLocked()
	return s.needsRecoveryLocked()
}

func (s *Session) needsRecoveryLocked() bool {
	if s.err == nil || s.recovering || s.inflight > 0 {
		return false
	}
	s.recovering = true
	return true
}

func (s *Session) markLive() {
	s.st.Lock()
	defer s.st.Unlock()
	if s.err == nil && !s.live {
		s.live = true
		s.r.m.active.Inc()
	}
}

func (s *Session) unliveLocked() {
	if s.live {
		s.live = false
		s.r.m.active.Dec()
	}
}

func (s *Session) isLive() bool {
	s.st.Lock()
	defer s.st.Unlock()
	return s.live
}

// shutdown closes Failed after the recorder ended the session on shutdown, so
// the proxy drops the connection.
func (s *Session) shutdown() {
	s.st.Lock()
	defer s.st.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("%w: session ended by gateway shutdown", ErrClosed)
		close(s.failed)
	}
}

// stalledFor returns how long the session has had frames in flight without
// any acknowledgement; 0 if it is not waiting or already failed.
func (s *Session) stalledFor(now time.Time) time.Duration {
	s.st.Lock()
	defer s.st.Unlock()
	if s.err != nil || s.inflight == 0 {
		return 0
	}
	return now.Sub(s.progress)
}

// FragmentBytes is the largest payload recorded as one frame; a longer
// message is split into fragments.
func (s *Session) FragmentBytes() int { return s.r.cfg.FragmentBytes }

// Protocol is the protocol the session's frames are recorded under.
func (s *Session) Protocol() schemas.Protocol { return s.proto }
