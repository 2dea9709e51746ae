package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
)

// Format is a replay output format.
type Format string

const (
	FormatText      Format = "text"      // Postgres transcript, or the SSH terminal as plain text
	FormatJSON      Format = "json"      // NDJSON, one PGEvent or SSHEvent per line
	FormatAsciicast Format = "asciicast" // SSH only: asciicast v2
	FormatHAR       Format = "har"       // HTTP only: HAR 1.2, one document
)

// ErrUnsupported is returned for a protocol or format replay does not handle.
var ErrUnsupported = errors.New("replay not supported")

// ContentType returns the media type of a format.
func ContentType(f Format) string {
	switch f {
	case FormatJSON:
		return "application/x-ndjson"
	case FormatAsciicast:
		return "application/x-asciicast"
	case FormatHAR:
		return "application/json"
	}
	return "text/plain; charset=utf-8"
}

// Check reports whether a protocol can be replayed in a format, before any output.
func Check(p schemas.Protocol, f Format) error {
	switch {
	case p != schemas.Postgres && p != schemas.SSH && p != schemas.HTTP:
		return fmt.Errorf("%w: %s sessions cannot be replayed yet (their frames can be read)", ErrUnsupported, p)
	case f != FormatText && f != FormatJSON && f != FormatAsciicast && f != FormatHAR:
		return fmt.Errorf("%w: unknown format %q (text, json, asciicast or har)", ErrUnsupported, f)
	case f == FormatAsciicast && p != schemas.SSH:
		return fmt.Errorf("%w: asciicast is for SSH terminals; use text or json for %s", ErrUnsupported, p)
	case f == FormatHAR && p != schemas.HTTP:
		return fmt.Errorf("%w: har is for HTTP sessions; use text or json for %s", ErrUnsupported, p)
	}
	return nil
}

// Write replays a session's frames to w in the given format. flush (may be nil)
// runs after each event.
func Write(w io.Writer, p schemas.Protocol, f Format, frames iter.Seq2[schemas.Frame, error], opt Options, flush func()) error {
	if err := Check(p, f); err != nil {
		return err
	}
	if p == schemas.HTTP {
		return writeHTTP(w, f, frames, flush)
	}
	if p == schemas.Postgres {
		events := Postgres(frames, opt)
		if f == FormatJSON {
			return WriteNDJSON(w, events, flush)
		}
		return WritePostgresText(w, events, flush)
	}
	events := SSH(frames, opt)
	switch f {
	case FormatJSON:
		return WriteNDJSON(w, events, flush)
	case FormatAsciicast:
		return WriteAsciicast(w, events, opt, flush)
	}
	return WriteSSHText(w, events, flush)
}

// WriteNDJSON writes one JSON value per line.
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
