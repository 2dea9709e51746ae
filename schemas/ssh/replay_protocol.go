package ssh

import (
	"fmt"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Replay formats.
const (
	FormatText      = "text"      // the terminal as plain text
	FormatJSON      = "json"      // NDJSON, one Event per line
	FormatAsciicast = "asciicast" // asciicast v2, for asciinema
)

// Formats implements protocol.Replayer.
func (Protocol) Formats() []string { return []string{FormatText, FormatJSON, FormatAsciicast} }

// Replay implements protocol.Replayer.
func (Protocol) Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions, flush func()) error {
	switch format {
	case FormatText:
		return WriteText(w, Events(frames, opt), flush)
	case FormatJSON:
		return protocol.WriteNDJSON(w, Events(frames, opt), flush)
	case FormatAsciicast:
		return WriteAsciicast(w, Events(frames, opt), opt, flush)
	}
	return fmt.Errorf("ssh: unknown replay format %q (text, json or asciicast)", format)
}

// Commands implements protocol.Replayer: the commands as stitching reports them.
func (Protocol) Commands(frames iter.Seq2[schemas.Frame, error], lim protocol.Limits) ([]schemas.Command, error) {
	return protocol.StitchAll(&Stitcher{}, frames, lim)
}
