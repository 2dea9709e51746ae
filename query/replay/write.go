// Package replay replays a recorded session in a format its protocol package offers
// (protocol.Replayer): it looks the protocol up in the registry, so the query API and
// the CLI handle every registered protocol alike. It also plays a replay stream with
// its recorded timing (Player).
package replay

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all" // every protocol's replay
)

// Format is a replay output format, as the protocol packages name them.
type Format string

// The formats the protocol packages offer today; Formats lists them per protocol.
const (
	FormatText      Format = "text"      // Postgres transcript, SSH terminal as plain text, HTTP like curl -v
	FormatJSON      Format = "json"      // NDJSON, one event per line
	FormatAsciicast Format = "asciicast" // SSH: asciicast v2
	FormatHAR       Format = "har"       // HTTP: HAR 1.2, one document
)

// Options tune a replay.
type Options = protocol.ReplayOptions

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

// Formats lists the formats a protocol replays as, the default first; none when
// its sessions cannot be replayed.
func Formats(p schemas.Protocol) []Format {
	r, err := protocol.Of[protocol.Replayer](p)
	if err != nil {
		return nil
	}
	var out []Format
	for _, f := range r.Formats() {
		out = append(out, Format(f))
	}
	return out
}

// Check reports whether a protocol can be replayed in a format, before any output.
func Check(p schemas.Protocol, f Format) error {
	r, err := protocol.Of[protocol.Replayer](p)
	if err != nil {
		return fmt.Errorf("%w: %s sessions cannot be replayed yet (their frames can be read)", ErrUnsupported, p)
	}
	if !slices.Contains(r.Formats(), string(f)) {
		return fmt.Errorf("%w: %s sessions replay as %s, not %q", ErrUnsupported, p, strings.Join(r.Formats(), ", "), f)
	}
	return nil
}

// Write replays a session's frames to w in the given format. flush (may be nil)
// runs after each event.
func Write(w io.Writer, p schemas.Protocol, f Format, frames iter.Seq2[schemas.Frame, error], opt Options, flush func()) error {
	if err := Check(p, f); err != nil {
		return err
	}
	r, _ := protocol.Of[protocol.Replayer](p)
	return r.Replay(w, string(f), frames, opt, flush)
}
