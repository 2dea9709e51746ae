// Package replay reconstructs what happened in a recorded session from its frames:
// a Postgres transcript (statements, parameters, result tables, errors, timings), an
// SSH terminal as asciicast v2 or plain text, and a JSON event stream for both.
//
// Everything works on an iterator of frames in seq order and streams: events are
// produced as soon as the frames that make them have been read, so a large or still
// live session starts replaying before it has been read in full, and memory stays
// bounded by the row and cell limits, not by the session's size.
package replay

import (
	"fmt"
	"iter"
	"time"

	"github.com/tapline/tapline/schemas"
)

// DefaultMaxMessageBytes bounds one reassembled message. The gateway's largest
// accepted Postgres message is 64 MiB by default; this leaves room above it.
const DefaultMaxMessageBytes = 256 << 20

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

// Messages reassembles fragmented frames into whole messages. Fragments are keyed by
// direction, channel and kind, so a fragment run interleaved with other frames still
// reassembles. A message larger than maxBytes (<= 0: DefaultMaxMessageBytes) is cut
// there with a note rather than held in memory without bound.
func Messages(frames iter.Seq2[schemas.Frame, error], maxBytes int) iter.Seq2[Message, error] {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMessageBytes
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
