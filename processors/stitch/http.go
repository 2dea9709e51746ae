package stitch

import (
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// HTTP stitches an HTTP session: one command per exchange (method and path,
// status, bytes each way, duration), a WebSocket as one command with its
// message counts. The pairing is the protocol package's Conversation, the same
// one replay and export use; bodies are not kept here.
type HTTP struct {
	Conv hs.Conversation `json:"conv"`
}

// Frame takes the next frame and returns the command it completed, if any.
func (s *HTTP) Frame(f *schemas.Frame, _ Limits) []schemas.Command {
	s.Conv.KeepBody = -1
	e := s.Conv.Add(f)
	if e == nil {
		return nil
	}
	return []schemas.Command{e.Command()}
}

// Flush returns the exchanges still open as incomplete commands.
func (s *HTTP) Flush(f *schemas.Frame, why string) []schemas.Command {
	var out []schemas.Command
	for _, e := range s.Conv.Flush() {
		c := e.Command()
		c.Error = why
		out = append(out, c)
	}
	return out
}
