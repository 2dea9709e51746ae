package protocol

import (
	"bufio"
	"encoding/json"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
)

// WriteNDJSON writes one JSON value per line, flushing (flush may be nil) after
// each: the json replay format of the protocol packages.
func WriteNDJSON[T any](w io.Writer, events iter.Seq2[T, error], flush func()) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for ev, err := range events {
		if err != nil {
			return err
		}
		if err := enc.Encode(ev); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	return bw.Flush()
}

// Stitcher pairs one session's requests with their responses and emits commands:
// the part of a Conversation that replays and differential checks run on their own.
type Stitcher interface {
	// Frame reads one masked frame and returns the commands it completed.
	Frame(f *schemas.Frame, lim Limits) []schemas.Command
	// Flush ends the session (f is its last frame; why says how it ended) and returns
	// the commands still open, with their final status.
	Flush(f *schemas.Frame, why string) []schemas.Command
}

// StitchAll runs a session's frames through a new stitcher and returns every
// command it reports, the open ones flushed at the end as a session cut short.
func StitchAll(s Stitcher, frames iter.Seq2[schemas.Frame, error], lim Limits) ([]schemas.Command, error) {
	var out []schemas.Command
	var last *schemas.Frame
	for f, err := range frames {
		if err != nil {
			return out, err
		}
		out = append(out, s.Frame(&f, lim)...)
		last = &f
	}
	if last != nil {
		out = append(out, s.Flush(last, "session ended before the command completed")...)
	}
	return out, nil
}
