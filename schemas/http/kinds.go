// Package http is the HTTP protocol as tapline records it: the frame kinds the
// HTTP edge (ingest/http) writes, their payloads, the exchange model that pairs
// each request with its response (used by stitching, replay and export alike),
// masking of heads and bodies, and the transcript, JSON and HAR 1.2 views.
//
// One exchange is one request and its response; its frames share the frame's
// channel (the exchange number within the session, from 1). A session is one
// agent connection to one target, so an HTTP/2 connection's concurrent streams
// interleave their frames and the channel tells them apart. Heads and ends are
// JSON; bodies and WebSocket messages are the bytes as on the wire (after TLS
// and HTTP framing, before any content decoding).
package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Kind is a frame kind of the HTTP protocol.
type Kind = string

// Frame kinds. CLIENT frames come from the agent, SERVER frames from the target
// (or from the gateway answering in the target's place: Head.Gateway is set).
const (
	KindRequest      Kind = "http.request"       // CLIENT: request head (Head, JSON)
	KindRequestBody  Kind = "http.request.body"  // CLIENT: request body bytes, in order
	KindRequestEnd   Kind = "http.request.end"   // CLIENT: byte count and trailers (End, JSON)
	KindResponse     Kind = "http.response"      // SERVER: response head (Head, JSON)
	KindResponseBody Kind = "http.response.body" // SERVER: response body bytes, in order
	KindResponseEnd  Kind = "http.response.end"  // SERVER: byte count, trailers, error (End, JSON)
	KindWSText       Kind = "http.ws.text"       // either: one WebSocket text message
	KindWSBinary     Kind = "http.ws.binary"     // either: one WebSocket binary message
	KindWSClose      Kind = "http.ws.close"      // either: a close frame (Close, JSON)

	// A request or response whose body was read whole before it was recorded
	// (empty, or of known small length) is one frame: head, end and body
	// together (EncodeComplete). It reads exactly as the three split kinds
	// would, so one exchange without a streamed body is two frames instead
	// of four to six.
	KindRequestComplete  Kind = "http.request.complete"  // CLIENT: head, whole body, end
	KindResponseComplete Kind = "http.response.complete" // SERVER: head, whole body, end
)

// Kinds lists every kind, for validation and documentation.
var Kinds = []Kind{KindRequest, KindRequestBody, KindRequestEnd, KindResponse, KindResponseBody,
	KindResponseEnd, KindWSText, KindWSBinary, KindWSClose, KindRequestComplete, KindResponseComplete}

// IsKind reports whether k is an HTTP frame kind.
func IsKind(k string) bool {
	for _, v := range Kinds {
		if v == k {
			return true
		}
	}
	return false
}

// IsBody reports whether k carries body bytes or a WebSocket message.
func IsBody(k string) bool {
	return k == KindRequestBody || k == KindResponseBody || k == KindWSText || k == KindWSBinary
}

// Field is one header or trailer line. Heads keep lines in order, duplicates
// included, as HAR does.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Head is a request or response head.
type Head struct {
	// Request: Method and Target (the request-target sent upstream: path and
	// query, the gateway's routing prefix removed), Host (the authority sent
	// upstream), Path (the path the agent asked for, prefix included).
	Method string `json:"method,omitempty"`
	Target string `json:"target,omitempty"`
	Host   string `json:"host,omitempty"`
	Path   string `json:"path,omitempty"`
	Scheme string `json:"scheme,omitempty"`
	// Response: Status code.
	Status int `json:"status,omitempty"`
	// Proto is the version on the agent's side ("HTTP/1.1", "HTTP/2.0").
	Proto   string  `json:"proto"`
	Headers []Field `json:"headers"`
	// Gateway says why the gateway answered itself instead of the target
	// ("upstream_unreachable", "header_timeout", ...); empty for target answers.
	Gateway string `json:"gateway,omitempty"`
}

// End closes a request or response body.
type End struct {
	Bytes    int64   `json:"bytes"`
	Trailers []Field `json:"trailers,omitempty"`
	// Error says why the body ended early (agent went away, upstream reset, ...).
	Error string `json:"error,omitempty"`
}

// Close is a WebSocket close frame.
type Close struct {
	Code   int    `json:"code"`
	Reason string `json:"reason,omitempty"`
}

// maxHeadBytes bounds a head payload decode: far above any head the edge accepts.
const maxHeadBytes = 4 << 20

// EncodeHead is the payload of KindRequest and KindResponse.
func EncodeHead(h *Head) []byte { return appendHead(make([]byte, 0, 256), h) }

// EncodeEnd is the payload of KindRequestEnd and KindResponseEnd.
func EncodeEnd(e *End) []byte { return appendEnd(make([]byte, 0, 32), e) }

// EncodeClose is the payload of KindWSClose.
func EncodeClose(c *Close) []byte { return mustJSON(c) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("http: encode %T: %v", v, err)) // plain structs of strings and ints
	}
	return b
}

// EncodeComplete is the payload of KindRequestComplete and
// KindResponseComplete: the head and the end as JSON lines, then the body
// bytes. JSON escapes line feeds, so the first two end the head and the end.
// The end keeps the byte count as relayed, which masking may change.
func EncodeComplete(h *Head, e *End, body []byte) []byte {
	return JoinComplete(EncodeHead(h), EncodeEnd(e), body)
}

// JoinComplete is EncodeComplete of an encoded head and end.
func JoinComplete(head, end, body []byte) []byte {
	out := make([]byte, 0, len(head)+len(end)+2+len(body))
	out = append(append(out, head...), '\n')
	out = append(append(out, end...), '\n')
	return append(out, body...)
}

// SplitComplete returns the encoded head and end and the body of a complete
// payload; they alias p.
func SplitComplete(p []byte) (head, end, body []byte, err error) {
	head, rest, ok := bytes.Cut(p, []byte{'\n'})
	if ok {
		end, body, ok = bytes.Cut(rest, []byte{'\n'})
	}
	if !ok {
		return nil, nil, nil, errors.New("http: complete payload without its head and end lines")
	}
	return head, end, body, nil
}

// DecodeComplete parses a complete payload.
func DecodeComplete(p []byte) (*Head, *End, []byte, error) {
	head, end, body, err := SplitComplete(p)
	if err != nil {
		return nil, nil, nil, err
	}
	h, err := DecodeHead(head)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := DecodeEnd(end)
	if err != nil {
		return nil, nil, nil, err
	}
	return h, e, body, nil
}

// IsComplete reports whether k is a complete request or response.
func IsComplete(k string) bool { return k == KindRequestComplete || k == KindResponseComplete }

// DecodeHead parses a head payload. It never panics.
func DecodeHead(p []byte) (*Head, error) {
	var h Head
	if err := decode(p, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// DecodeEnd parses an end payload.
func DecodeEnd(p []byte) (*End, error) {
	var e End
	if err := decode(p, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// DecodeClose parses a close payload.
func DecodeClose(p []byte) (*Close, error) {
	var c Close
	if err := decode(p, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func decode(p []byte, v any) error {
	if len(p) > maxHeadBytes {
		return errors.New("http: payload too large for a head")
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("http: bad payload: %w", err)
	}
	return nil
}

// Get returns the first value of the named field (case-insensitive).
func Get(fs []Field, name string) string {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// SensitiveHeaders are always masked, whatever the configuration says: they
// carry credentials or session state.
var SensitiveHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie"}
