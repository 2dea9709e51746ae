package http

import (
	"strconv"
	"strings"

	"github.com/tapline/tapline/schemas"
)

// MaskState is what masking needs to remember between a session's frames: the
// type and declared length of each open body, from its head. Exported fields
// are the state a processor saves with the session.
type MaskState struct {
	Bodies map[string]BodyInfo `json:"bodies,omitempty"`
}

// BodyInfo describes a body from its head.
type BodyInfo struct {
	Type     string `json:"type,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Length   int64  `json:"length"` // -1: unknown (chunked, streamed)
	// A streamed compressed body masked decoded: its compressed bytes so
	// far (decoders cannot be saved with the session, so each frame
	// decodes them again, bounded by MaxEncodedBody), how many decoded
	// bytes were already stored, and whether it was cut.
	Raw     []byte `json:"raw,omitempty"`
	Emitted int64  `json:"emitted,omitempty"`
	Cut     bool   `json:"cut,omitempty"`
}

// decoded reports whether masking stores this body decoded: a textual body
// in an encoding masking can decode.
func (b BodyInfo) decoded() bool {
	return decodable(b.Encoding) && textual(strings.ToLower(b.Type))
}

func bodyKey(f *schemas.Frame) string {
	return string(f.Direction) + "/" + strconv.FormatInt(f.Channel, 10)
}

// MaskFrame returns f's payload masked under r, and whether it changed. A body
// frame is masked by field names only when it holds the whole body (its
// length equals the head's Content-Length); parts of streamed or large bodies
// and WebSocket messages get the detectors (binary ones keeping their length). A payload that does not decode is
// masked as text, so nothing escapes masking by being malformed.
func (s *MaskState) MaskFrame(f *schemas.Frame, r MaskRules) []byte {
	switch f.Kind {
	case KindRequest, KindResponse:
		s.remember(f)
		if out, ok := MaskHead(f.Payload, r); ok {
			return s.markDecoded(f, out, r)
		}
	case KindRequestEnd, KindResponseEnd:
		delete(s.Bodies, bodyKey(f))
		if out, ok := MaskEnd(f.Payload, r); ok {
			return out
		}
	case KindWSClose:
		if c, err := DecodeClose(f.Payload); err == nil {
			c.Reason = string(r.text([]byte(c.Reason)))
			return EncodeClose(c)
		}
	case KindRequestBody, KindResponseBody:
		b := s.Bodies[bodyKey(f)]
		if b.decoded() {
			return s.maskDecoded(f, b, r)
		}
		if f.Fragment == 0 && f.Final && b.Length == int64(len(f.Payload)) {
			return MaskBody(f.Payload, b.Type, b.Encoding, r)
		}
		return MaskPart(f.Payload, b.Type, b.Encoding, r)
	case KindWSText:
		if f.Fragment == 0 && f.Final {
			return MaskBody(f.Payload, "application/json", "", r)
		}
		return r.text(f.Payload)
	case KindWSBinary:
		return r.bytes(f.Payload)
	case KindRequestComplete, KindResponseComplete:
		if f.Fragment == 0 && f.Final {
			return s.maskComplete(f, r)
		}
	}
	return r.text(f.Payload)
}

// maskComplete masks a complete request or response as its head, body and
// end frames would be: the body is known whole, so JSON and form fields are
// masked by name.
func (s *MaskState) maskComplete(f *schemas.Frame, r MaskRules) []byte {
	head, end, body, err := SplitComplete(f.Payload)
	if err != nil {
		return r.text(f.Payload)
	}
	headKind, bodyKind, endKind := KindRequest, KindRequestBody, KindRequestEnd
	if f.Kind == KindResponseComplete {
		headKind, bodyKind, endKind = KindResponse, KindResponseBody, KindResponseEnd
	}
	part := *f
	part.Kind, part.Payload = headKind, head
	head = s.MaskFrame(&part, r)
	if len(body) > 0 {
		k := bodyKey(f)
		if s.Bodies == nil {
			s.Bodies = map[string]BodyInfo{}
		}
		b := s.Bodies[k]
		b.Length = int64(len(body)) // whatever the head says, this is the whole body
		s.Bodies[k] = b
		part.Kind, part.Payload = bodyKind, body
		body = s.MaskFrame(&part, r)
	}
	part.Kind, part.Payload = endKind, end
	end = s.MaskFrame(&part, r) // trailers; forgets the body
	return JoinComplete(head, end, body)
}

func (s *MaskState) remember(f *schemas.Frame) {
	h, err := DecodeHead(f.Payload)
	if err != nil {
		return
	}
	length := int64(-1)
	if v := Get(h.Headers, "Content-Length"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			length = n
		}
	}
	if s.Bodies == nil {
		s.Bodies = map[string]BodyInfo{}
	}
	s.Bodies[bodyKey(f)] = BodyInfo{Type: Get(h.Headers, "Content-Type"), Encoding: Get(h.Headers, "Content-Encoding"), Length: length}
}
