package postgres

import (
	"fmt"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Replay formats.
const (
	FormatText = "text" // a psql-like transcript
	FormatJSON = "json" // NDJSON, one Event per line
)

// Formats implements protocol.Replayer.
func (Protocol) Formats() []string { return []string{FormatText, FormatJSON} }

// Replay implements protocol.Replayer: the transcript of Events, as text or NDJSON.
func (Protocol) Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions, flush func()) error {
	switch format {
	case FormatText:
		return WriteText(w, Events(frames, opt), flush)
	case FormatJSON:
		return protocol.WriteNDJSON(w, Events(frames, opt), flush)
	}
	return fmt.Errorf("postgres: unknown replay format %q (text or json)", format)
}

// Commands implements protocol.Replayer: the statements as stitching reports them.
func (p Protocol) Commands(frames iter.Seq2[schemas.Frame, error], lim protocol.Limits) ([]schemas.Command, error) {
	return protocol.StitchAll(&Stitcher{}, frames, lim)
}
