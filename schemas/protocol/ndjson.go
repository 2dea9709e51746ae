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
