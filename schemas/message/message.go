// Package message reassembles a recorded session's fragmented frames into whole
// protocol messages, for the replays of the protocol packages. It streams: a message
// is delivered as soon as its last fragment has been read, so a live session replays
// as it is recorded, and memory is bounded by the largest message, not the session.
package message

import (
	"fmt"
	"github.com/tapline/tapline/schemas/textsafe"
	"iter"
	"time"

	"github.com/tapline/tapline/schemas"
)

// DefaultMaxBytes bounds one reassembled message. The gateway's largest
// accepted Postgres message is 64 MiB by default; this leaves room above it.
const DefaultMaxBytes = 256 << 20

// Message is one protocol message: a frame, or the fragments of one reassembled.
type Message struct {
	Seq       int64 // seq of the first fragment
	SeqEnd    int64 // seq of the last fragment (== Seq when not fragmented)
	TS        time.Time
	Direction schemas.Direction
	Kind      string
	Channel   int64
	Payload   []byte
	Masked    bool // some fragment's payload was rewritten by masking
	Withheld  bool // some fragment's payload was withheld: the processors failed on it
	Start     *schemas.SessionStart
	Denial    string
	End       *schemas.SessionEnd
	// Note describes a recording anomaly met while reassembling (a broken fragment
	// run); the message is still delivered with what was recorded.
	Note string
}

type partKey struct {
	dir     schemas.Direction
	channel int64
	kind    string
}

// Reassemble reassembles fragmented frames into whole messages. Fragments are keyed by
// direction, channel and kind, so a fragment run interleaved with other frames still
// reassembles. A message larger than maxBytes (<= 0: DefaultMaxBytes) is cut
// there with a note rather than held in memory without bound.
func Reassemble(frames iter.Seq2[schemas.Frame, error], maxBytes int) iter.Seq2[Message, error] {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return func(yield func(Message, error) bool) {
		parts := map[partKey]*Message{}
		next := map[partKey]int32{}
		for f, err := range frames {
			if err != nil {
				yield(Message{}, err)
				return
			}
			k := partKey{f.Direction, f.Channel, f.Kind}
			m, open := parts[k]
			if open && f.Fragment != next[k] {
				m.Note = fmt.Sprintf("fragment run broken at seq %d (fragment %d, expected %d)", f.Seq, f.Fragment, next[k])
				delete(parts, k)
				if !yield(*m, nil) {
					return
				}
				m, open = nil, false
			}
			if !open && f.Fragment != 0 {
				if !yield(frameMessage(&f, fmt.Sprintf("fragment %d without its start", f.Fragment)), nil) {
					return
				}
				continue
			}
			if !open && f.Final {
				if !yield(frameMessage(&f, ""), nil) {
					return
				}
				continue
			}
			if !open {
				msg := frameMessage(&f, "")
				msg.Payload = append([]byte(nil), f.Payload...)
				parts[k], next[k] = &msg, 1
				continue
			}
			m.SeqEnd = f.Seq
			m.Masked = m.Masked || len(f.Masks) > 0
			m.Withheld = m.Withheld || f.Masks[schemas.MaskWithheld] > 0
			if len(m.Payload)+len(f.Payload) > maxBytes {
				m.Note = fmt.Sprintf("message cut at %d bytes", maxBytes)
			} else {
				m.Payload = append(m.Payload, f.Payload...)
			}
			next[k]++
			if f.Final {
				delete(parts, k)
				if !yield(*m, nil) {
					return
				}
			}
		}
		// Fragments still open at the end belong to a live session's message in
		// flight, or to a recording cut short; neither is a whole message.
	}
}

func frameMessage(f *schemas.Frame, note string) Message {
	return Message{
		Seq: f.Seq, SeqEnd: f.Seq, TS: f.TS, Direction: f.Direction, Kind: f.Kind, Channel: f.Channel,
		Payload: f.Payload, Masked: len(f.Masks) > 0,
		Withheld: f.Masks[schemas.MaskWithheld] > 0, Start: f.Start, Denial: f.Denial, End: f.End, Note: note,
	}
}

// SessionEnd is the part of session.end a replay shows.
type SessionEnd struct {
	Reason      string `json:"reason"`
	Frames      int64  `json:"frames"`
	BytesClient int64  `json:"bytes_client"`
	BytesServer int64  `json:"bytes_server"`
}

// End returns what a replay shows of e (nil: an empty end).
func End(e *schemas.SessionEnd) *SessionEnd {
	if e == nil {
		return &SessionEnd{}
	}
	return &SessionEnd{Reason: e.Reason, Frames: e.Frames, BytesClient: e.BytesClient, BytesServer: e.BytesServer}
}

// TimeLayout is how replays print times.
const TimeLayout = "2006-01-02 15:04:05.000000Z07:00"

// DescribeStart is a session start as a replay's one-line heading, escaped.
func DescribeStart(s *schemas.SessionStart) string { return textsafe.Line(startText(s)) }

func startText(s *schemas.SessionStart) string {
	d := "session by " + who(s.Subject, s.Email)
	if s.Issuer != "" {
		d += " (" + s.Issuer + ")"
	}
	if s.Target != "" {
		d += " on target " + s.Target
	}
	if s.ClientAddr != "" {
		d += " from " + s.ClientAddr
	}
	return d
}

func who(subject, email string) string {
	if email == "" || email == subject {
		return subject
	}
	return subject + " <" + email + ">"
}
