package kubernetes

import (
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

func init() { protocol.Register(Protocol{}) }

// Protocol is the Kubernetes API in the protocol registry.
type Protocol struct{}

// Name implements protocol.Protocol.
func (Protocol) Name() schemas.Protocol { return schemas.Kubernetes }

// Kinds implements protocol.Protocol.
func (Protocol) Kinds() []string { return append([]string(nil), Kinds...) }

// OCSFClass implements protocol.Audited.
func (Protocol) OCSFClass() string { return "api" }

// NewConversation implements protocol.Conversations.
func (Protocol) NewConversation() protocol.Conversation { return &Conversation{} }

// Formats implements protocol.Replayer.
func (Protocol) Formats() []string {
	return []string{FormatText, FormatJSON, FormatHAR, FormatAsciicast}
}

// Replay implements protocol.Replayer.
func (Protocol) Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions, flush func()) error {
	return Replay(w, format, frames, opt, flush)
}

// Commands implements protocol.Replayer: the calls as stitching reports them.
func (Protocol) Commands(frames iter.Seq2[schemas.Frame, error], lim protocol.Limits) ([]schemas.Command, error) {
	var c Conversation
	var out []schemas.Command
	var last *schemas.Frame
	for f, err := range frames {
		if err != nil {
			return out, err
		}
		out = append(out, c.Stitch(&f, lim)...)
		last = &f
	}
	if last != nil {
		out = append(out, c.Flush(last, "session ended before the call completed")...)
	}
	return out, nil
}
