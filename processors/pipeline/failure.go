package pipeline

import (
	"fmt"

	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Withheld is the mask type of a frame whose payload was withheld because processing
// it failed: the frame is forwarded without its payload (never unmasked) and its chain
// links still verify, as for any masked frame.
const Withheld = schemas.MaskWithheld

// FrameError is a frame the processors failed on.
type FrameError struct {
	SessionID string
	Seq       int64
	Kind      string
	Panic     any    // what the code panicked with, or nil
	Err       error  // the error returned, when it did not panic
	Stack     []byte // the stack of the panic, for the log
}

func (e *FrameError) Error() string {
	cause := fmt.Sprint(e.Err)
	if e.Panic != nil {
		cause = fmt.Sprintf("panic: %v", e.Panic)
	}
	return fmt.Sprintf("session %s seq %d (%s): processing failed: %s", e.SessionID, e.Seq, e.Kind, cause)
}

func (e *FrameError) Unwrap() error { return e.Err }

// Stages of a protocol frame, for failed.
const (
	stageMask   = "mask"
	stageStitch = "stitch"
)

// failed contains a failure on frame f: the frame f put in out, if any, is replaced by
// f with its payload withheld, the session counts f, and the failure becomes a
// processing_failed alert. The state of the stage that failed may be half-updated and
// is dropped: the session's masking state (a fragment walk, a password prompt) if
// masking failed, its stitching state (open commands, prepared statements) if
// stitching did; a frame that fails masking is not stitched.
func (p *Processor) failed(f schemas.Frame, mark int, ferr *FrameError, out *Output) {
	s := p.sessions[f.SessionID]
	if s == nil {
		s = newSession(&f)
		p.sessions[f.SessionID] = s
	}
	p.dirty[f.SessionID] = true
	if s.Tip.Seq < f.Seq {
		// The checks did not get as far as accepting f: take it as the tip, so that
		// the next frame is checked against it.
		s.Tip.Seq, s.Tip.Hash = f.Seq, append([]byte(nil), f.Hash...)
	}
	sum := &s.Summary
	if sum.LastSeq < f.Seq {
		sum.Frames++
		sum.LastSeq = f.Seq
		sum.FinalHash = append(sum.FinalHash[:0], f.Hash...)
		if !f.IsLifecycle() {
			if f.Direction == schemas.Client {
				sum.BytesClient += int64(len(f.Payload))
			} else {
				sum.BytesServer += int64(len(f.Payload))
			}
		}
	}
	w := withhold(f)
	if !w.IsLifecycle() && p.cfg.SigningKey != nil {
		// The withheld frame is what the processors vouch for, like any masked one.
		_ = schemas.SignMasked(p.cfg.SigningKey, &w)
	}
	out.Frames = append(out.Frames[:mark], w)
	switch p.stage {
	case stageMask:
		if s.Conv != nil {
			s.Conv.Withheld(&f)
		}
		// The conversation still learns that a message of this kind passed (a
		// Query whose rows follow, a channel's data), from the withheld frame.
		if !p.stitchWithheld(s, w, out) {
			s.Conv = nil
		}
	case stageStitch:
		s.Conv = s.freshConversation(&f)
	}
	s.Changed = true
	p.alert(s, integrity.Alert{Kind: integrity.ProcessingFailed, Seq: f.Seq, Detail: ferr.Error()}, f.TS, out)
	p.maybeSummary(s, f.TS, true, out)
}

// stitchWithheld passes the withheld frame w to the conversation (which Withheld
// told what the frame was, so that it keeps pairing answers with requests),
// reporting whether that went without a panic.
func (p *Processor) stitchWithheld(s *session, w schemas.Frame, out *Output) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	if s.Conv != nil {
		p.commands(s, s.Conv.Stitch(&w, p.cfg.Limits), out)
	}
	return true
}

// withhold returns f without its payload. Lifecycle frames are never masked and carry
// no agent bytes: they keep theirs, so the session's start and signed end still read.
func withhold(f schemas.Frame) schemas.Frame {
	if f.IsLifecycle() {
		return f
	}
	f.Payload, f.PayloadSalt = nil, nil
	masks := map[string]int64{Withheld: 1}
	f.Masks = masks
	return f
}

// freshConversation replaces a conversation whose stitching failed: its state is
// suspect, but the masking it carried must not be lost with it, so the new one
// assumes the worst about the failed frame (Withheld). nil when the session had
// no conversation.
func (s *session) freshConversation(f *schemas.Frame) protocol.Conversation {
	if s.Conv == nil {
		return nil
	}
	cp, err := protocol.Of[protocol.Conversations](s.Summary.Protocol)
	if err != nil {
		return nil
	}
	c := cp.NewConversation()
	c.Withheld(f)
	return c
}
