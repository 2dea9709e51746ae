package recorder

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// failureReasonPrefix starts the reason of a session.end written for a
// session whose recording failed.
const failureReasonPrefix = "recording failed: kafka unavailable"

func failureReason(cause error) string {
	if !errors.Is(cause, ErrUnavailable) {
		return "recording failed: " + cause.Error() // e.g. the proxy gave up waiting for session.start
	}
	detail := strings.TrimPrefix(cause.Error(), ErrUnavailable.Error()+": ")
	return failureReasonPrefix + " (" + detail + ")"
}

// recover closes a failed session once all its frames are settled: when
// Kafka takes frames again, it writes a signed session.end with the failure
// reason, chained after the last frame the session sealed. Frames that Kafka
// never acknowledged show up to a verifier as a seq gap before it; nothing is
// re-sequenced or left out of the chain. A session none of whose frames
// reached Kafka gets nothing.
func (r *Recorder) recover(s *Session) {
	s.mu.Lock()
	s.st.Lock()
	if s.inflight > 0 {
		// A frame is still in flight; its promise starts recovery again.
		s.recovering = false
		s.st.Unlock()
		s.mu.Unlock()
		return
	}
	endAcked, anyAcked, cause := s.endAcked, s.anyAcked, s.err
	s.st.Unlock()
	if endAcked || !anyAcked {
		s.mu.Unlock()
		if !endAcked {
			r.m.recovery.WithLabelValues("empty").Inc()
		}
		r.finished(s)
		return
	}
	val, err := r.sealFailureEndLocked(s, failureReason(cause))
	s.mu.Unlock()
	if err != nil {
		r.log.Error("cannot build session.end for failed session", "session_id", s.id, "err", err)
		return
	}

	backoff := 100 * time.Millisecond
	for {
		if !r.waitReady() {
			return
		}
		done := make(chan error, 1)
		r.cl.Produce(context.Background(), &kgo.Record{Key: s.key, Value: val, Timestamp: time.Now()},
			func(_ *kgo.Record, err error) { done <- err })
		select {
		case err = <-done:
		case <-r.stop:
			return
		}
		if err == nil {
			break
		}
		r.log.Warn("session.end for failed session not written yet", "session_id", s.id, "err", err)
		select {
		case <-time.After(backoff):
		case <-r.stop:
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	s.st.Lock()
	s.endAcked = true
	s.st.Unlock()
	r.lastAck.Store(time.Now().UnixNano())
	r.m.recovery.WithLabelValues("written").Inc()
	r.log.Info("failed session closed with session.end", "session_id", s.id, "reason", failureReason(cause))
	r.finished(s)
}

// sealFailureEndLocked seals the session.end for a failed session and
// encodes it once, so that retries write identical bytes. Called with s.mu held.
func (r *Recorder) sealFailureEndLocked(s *Session, reason string) ([]byte, error) {
	f, err := s.endFrameLocked(reason)
	if err != nil {
		return nil, err
	}
	f.SessionID, f.Seq, f.Protocol, f.GatewayID = s.id, s.nextSeq, s.proto, r.cfg.GatewayID
	if err := schemas.Seal(f, s.lastHash); err != nil {
		return nil, err
	}
	val, err := r.codec.Encode(f)
	if err != nil {
		return nil, err
	}
	s.nextSeq++
	s.lastHash = f.Hash
	return val, nil
}

// waitReady polls Ready until Kafka takes frames; false when the recorder stops.
func (r *Recorder) waitReady() bool {
	wait := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-r.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := r.ready(ctx)
		cancel()
		if err == nil {
			return true
		}
		if errors.Is(err, context.Canceled) {
			return false
		}
		select {
		case <-time.After(wait):
		case <-r.stop:
			return false
		}
		wait = min(2*wait, 5*time.Second)
	}
}
