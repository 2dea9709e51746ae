package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Format is a replay output format.
type Format string

const (
	FormatText      Format = "text"      // Postgres transcript, or the SSH terminal as plain text
	FormatJSON      Format = "json"      // NDJSON, one PGEvent or SSHEvent per line
	FormatAsciicast Format = "asciicast" // SSH only: asciicast v2
	FormatHAR       Format = "har"       // HTTP: HAR 1.2, one document
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
// A protocol whose package is a registered protocol.Replayer says itself.
func Check(p schemas.Protocol, f Format) error {
	if r, err := protocol.Of[protocol.Replayer](p); err == nil {
		if !slices.Contains(r.Formats(), string(f)) {
			return fmt.Errorf("%w: %s sessions replay as %s, not %q", ErrUnsupported, p, strings.Join(r.Formats(), ", "), f)
		}
		return nil
	}
	switch {
	case p != schemas.Postgres && p != schemas.SSH:
		return fmt.Errorf("%w: %s sessions cannot be replayed yet (their frames can be read)", ErrUnsupported, p)
	case f != FormatText && f != FormatJSON && f != FormatAsciicast:
		return fmt.Errorf("%w: unknown format %q (text, json or asciicast)", ErrUnsupported, f)
	case f == FormatAsciicast && p != schemas.SSH:
		return fmt.Errorf("%w: asciicast is for SSH terminals; use text or json for %s", ErrUnsupported, p)
	}
	return nil
}

// Write replays a session's frames to w in the given format. flush (may be nil)
// runs after each event.
func Write(w io.Writer, p schemas.Protocol, f Format, frames iter.Seq2[schemas.Frame, error], opt Options, flush func()) error {
	if err := Check(p, f); err != nil {
		return err
	}
	if ok, err := writeRegistered(w, p, f, frames, opt, flush); ok {
		return err
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
