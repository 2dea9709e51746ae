package httpproxy

import (
	"fmt"
	"net/http"

	"github.com/tapline/tapline/schemas"
)

// Dialect is what a protocol built on HTTP (the Kubernetes API) changes in the
// edge for its targets: the form of the gateway's refusals, and how upgraded
// streams are recorded. Any field may be nil: the HTTP behaviour then applies.
type Dialect struct {
	// Refuse renders a refusal by the gateway (status and message as the HTTP
	// edge would send them) in the form the protocol's clients print. It may
	// change the status to the one those clients expect.
	Refuse func(status int, msg string) (code int, contentType string, body []byte)
	// NoRetryAfter leaves Retry-After off refusals: clients that retry such
	// answers silently (client-go, ten times) then report at once.
	NoRetryAfter bool
	// Messages returns how the messages of a WebSocket with the negotiated
	// subprotocol are recorded; nil records each one whole (http.ws.*).
	Messages func(subprotocol string) StreamFraming
	// Upgrade returns how the agent's non-WebSocket upgrade request (Upgrade:
	// SPDY/3.1) is recorded once relayed; nil forwards it as a plain request.
	Upgrade func(r *http.Request) StreamFraming
}

// Frame is one frame to record: its kind and payload.
type Frame struct {
	Kind    string
	Payload []byte
}

// StreamFraming turns an upgraded connection's traffic into frames. One value
// serves both directions of one connection; each direction calls it from one
// goroutine.
type StreamFraming interface {
	// Message returns the frames of one WebSocket message (nil: record it whole).
	// Used when Split is nil.
	Message(dir schemas.Direction, msg []byte) []Frame
	// Split reads the complete units (such as SPDY frames) at the start of buf
	// and returns how many bytes they take and their frames. The bytes are
	// forwarded only once their frames are recorded; the rest of buf waits for
	// more. An error ends the connection.
	Split(dir schemas.Direction, buf []byte) (n int, frames []Frame, err error)
	// Splits reports whether the traffic is a byte stream cut by Split rather
	// than whole messages.
	Splits() bool
	// Cut returns what to send the agent, between two units, when the gateway
	// ends the stream itself (recording failed, session ended) so the agent's
	// client reports why instead of a clean end; nil sends nothing.
	Cut(reason string) []byte
}

func (s *Server) dialect(target string) *Dialect {
	if s.dialects == nil {
		return nil
	}
	return s.dialects(target)
}

// refuse answers a refusal by the gateway: in the target's dialect when it
// has one, as plain text otherwise.
func (s *Server) refuse(w http.ResponseWriter, target string, status int, msg string) {
	d := s.dialect(target)
	if d == nil || d.Refuse == nil {
		plain(w, status, msg)
		return
	}
	code, ctype, body := d.Refuse(status, msg)
	if d.NoRetryAfter {
		w.Header().Del("Retry-After")
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// answerBody is a gateway answer in the target's dialect: status, content type, body.
func (s *Server) answerBody(target string, status int, msg string) (int, string, []byte) {
	if d := s.dialect(target); d != nil && d.Refuse != nil {
		return d.Refuse(status, msg)
	}
	return status, "text/plain; charset=utf-8", fmt.Appendf(nil, "%s\n", msg)
}
