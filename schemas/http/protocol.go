package http

import (
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

func init() { protocol.Register(Protocol{}) }

// Protocol is HTTP in the protocol registry.
type Protocol struct{}

// Name implements protocol.Protocol.
func (Protocol) Name() schemas.Protocol { return schemas.HTTP }

// Kinds implements protocol.Protocol.
func (Protocol) Kinds() []string { return append([]string(nil), Kinds...) }

// OCSFClass implements protocol.Audited.
func (Protocol) OCSFClass() string { return "http" }

// Replay formats.
const (
	FormatText = "text" // like curl -v
	FormatJSON = "json" // NDJSON, one exchange per line
	FormatHAR  = "har"  // HAR 1.2, one document
)

// Formats implements protocol.Replayer.
func (Protocol) Formats() []string { return []string{FormatText, FormatJSON, FormatHAR} }

// Replay implements protocol.Replayer.
func (Protocol) Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], _ protocol.ReplayOptions, flush func()) error {
	return Replay(w, format, frames, flush)
}

// Commands implements protocol.Replayer: the exchanges as stitching reports them.
func (Protocol) Commands(frames iter.Seq2[schemas.Frame, error], lim protocol.Limits) ([]schemas.Command, error) {
	s := &Stitcher{}
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
		out = append(out, s.Flush(last, "session ended before the exchange completed")...)
	}
	return out, nil
}

// Stitcher stitches an HTTP session: one command per exchange (method and path,
// status, bytes each way, duration), a WebSocket as one command with its
// message counts. It is the same Conversation replay and export use; bodies
// are not kept here.
type Stitcher struct {
	Conv Conversation `json:"conv"`
}

// Frame reads one frame and returns the command of the exchange it completed.
func (s *Stitcher) Frame(f *schemas.Frame, _ protocol.Limits) []schemas.Command {
	s.Conv.KeepBody = -1
	e := s.Conv.Add(f)
	if e == nil {
		return nil
	}
	return []schemas.Command{e.Command()}
}

// Flush ends the session: open exchanges end as incomplete.
func (s *Stitcher) Flush(_ *schemas.Frame, why string) []schemas.Command {
	var out []schemas.Command
	for _, e := range s.Conv.Flush() {
		c := e.Command()
		c.Error = why
		out = append(out, c)
	}
	return out
}
