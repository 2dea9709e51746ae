package pipeline

import (
	"bytes"
	"time"

	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Bounds of the hold-back (docs/processors.md, "Hold-back"): a frame whose last
// bytes may begin a secret waits for the next frame of its stream, and the
// session's later frames wait behind it so that frames leave in seq order, until
// one of these (or Config.HoldFor) passes. Each is in event time or in the
// session's own frames, so that processing stays deterministic.
const (
	// DefaultHoldFor is Config.HoldFor's default: a held frame is released by any
	// later frame of its session stamped this long after it. An agent's pasted
	// chunks arrive within milliseconds of each other.
	DefaultHoldFor = 5 * time.Second
	// MaxHeldFrames and MaxHeldBytes bound the frames (and their payload bytes)
	// a session keeps back, held or queued behind a held one; past them the
	// oldest go out. They bound the session's state too.
	MaxHeldFrames = 256
	MaxHeldBytes  = 64 << 10
)

// heldFrame is a frame kept back: masked as far as its stream is known, neither
// emitted nor stitched yet.
type heldFrame struct {
	Frame  schemas.Frame `json:"frame"`
	Stream string        `json:"stream,omitempty"`
	// Pending is how many of its last bytes may still begin a secret: while
	// non-zero, the frame waits for the next frame of its stream.
	Pending int `json:"pending,omitempty"`
	// Masked: masking changed the payload, so the frame is signed when it leaves.
	Masked bool `json:"masked,omitempty"`
}

// hold queues f (masked; masked reports whether masking changed it) behind the
// session's held frames, applies what its stream found to the frames it
// continues, and releases what no longer waits. It reports false, doing nothing,
// when nothing is held and f need not be: f then goes out at once.
func (p *Processor) hold(s *session, f *schemas.Frame, masked bool, h protocol.Hold, out *Output) bool {
	pending := 0
	if h.Stream != "" {
		pending = min(h.Pending, len(f.Payload))
	}
	if len(s.Held) == 0 && pending == 0 {
		return false
	}
	s.continueStream(h, len(f.Payload))
	s.Held = append(s.Held, heldFrame{Frame: *f, Stream: h.Stream, Pending: pending, Masked: masked})
	p.release(s, f.TS, false, out)
	return true
}

// continueStream applies what the frame after them found to the held frames of
// its stream (newest first): the secrets it completed are masked where they lie
// in them, and those no longer under the stream's pending bytes stop waiting.
// Streams the frame ended stop waiting altogether.
func (s *session) continueStream(h protocol.Hold, n int) {
	before, pend := 0, h.Pending-n // bytes of the stream after the frame at i, before f
	for i := len(s.Held) - 1; i >= 0 && h.Stream != ""; i-- {
		hf := &s.Held[i]
		if hf.Stream != h.Stream {
			continue
		}
		size := len(hf.Frame.Payload)
		for _, b := range h.Back {
			// The span [To, From) back from the end, within this frame's
			// [before, before+size).
			from, to := min(b.From, before+size), max(b.To, before)
			if from > to {
				maskRange(hf, size-(from-before), size-(to-before), b.Type)
			}
		}
		hf.Pending = min(max(pend, 0), size)
		pend -= size
		before += size
	}
	for _, ended := range h.Ended {
		for i := range s.Held {
			if s.Held[i].Stream == ended {
				s.Held[i].Pending = 0
			}
		}
	}
}

// maskRange masks bytes [i, j) of a held frame's payload, same length (line
// breaks kept, as the stream's masking writes them), if any of them is not yet.
func maskRange(hf *heldFrame, i, j int, typ string) {
	f := &hf.Frame
	if !bytes.ContainsFunc(f.Payload[i:j], func(r rune) bool { return r != '*' && r != '\n' && r != '\r' }) {
		return
	}
	f.Payload = append([]byte(nil), f.Payload...)
	for k := i; k < j; k++ {
		if c := f.Payload[k]; c != '\n' && c != '\r' {
			f.Payload[k] = '*'
		}
	}
	f.PayloadSalt = nil
	if f.Masks == nil {
		f.Masks = map[string]int64{}
	}
	f.Masks[typ]++
	hf.Masked = true
}

// release emits the held frames at the front of the queue that no longer wait:
// their stream moved past them, a frame came HoldFor after them (now is the
// event time of the session's latest frame), or the session holds more than its
// bounds. all releases every one (the session ends, or its state is suspect).
func (p *Processor) release(s *session, now time.Time, all bool, out *Output) {
	size := 0
	for _, hf := range s.Held {
		size += len(hf.Frame.Payload)
	}
	for len(s.Held) > 0 {
		hf := s.Held[0]
		wait := hf.Pending > 0 && now.Sub(hf.Frame.TS) < p.cfg.HoldFor &&
			len(s.Held) <= MaxHeldFrames && size <= MaxHeldBytes
		if wait && !all {
			break
		}
		s.Held = s.Held[1:]
		size -= len(hf.Frame.Payload)
		p.emitHeld(s, hf, out)
	}
	if len(s.Held) == 0 {
		s.Held = nil
	}
}

// emitHeld emits a released frame and stitches it. A failure to stitch it is
// contained here, as for a frame stitched on arrival (see failed): the frame goes
// out withheld, the conversation starts afresh, and an alert names the frame. Its
// raw record was committed long ago, so it is not dead-lettered.
func (p *Processor) emitHeld(s *session, hf heldFrame, out *Output) {
	f := hf.Frame
	if hf.Masked && p.cfg.SigningKey != nil {
		_ = schemas.SignMasked(p.cfg.SigningKey, &f)
	}
	mark := len(out.Frames)
	out.Frames = append(out.Frames, f)
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		w := withhold(hf.Frame)
		if p.cfg.SigningKey != nil {
			_ = schemas.SignMasked(p.cfg.SigningKey, &w)
		}
		out.Frames[mark] = w
		s.Conv = s.freshConversation(&hf.Frame)
		for i := range s.Held {
			s.Held[i].Pending = 0 // their stream's state went with the conversation
		}
		s.Changed = true
		ferr := &FrameError{SessionID: f.SessionID, Seq: f.Seq, Kind: f.Kind, Panic: v}
		p.alert(s, integrity.Alert{Kind: integrity.ProcessingFailed, Seq: f.Seq, Detail: ferr.Error()}, f.TS, out)
	}()
	p.stitch(s, &f, out)
}

// stitch passes an emitted frame to the session's conversation.
func (p *Processor) stitch(s *session, f *schemas.Frame, out *Output) {
	var cmds []schemas.Command
	if s.Conv != nil {
		cmds = s.Conv.Stitch(f, p.cfg.Limits)
	}
	p.commands(s, cmds, out)
}
