// Package postgres is the Postgres wire protocol as tapline records it: the frame
// kinds the edge (ingest/postgres) writes, and the rules every stage that looks
// inside a recorded message shares (masking, stitching, replay). A frame's payload
// is one message as it crossed the wire: a type byte, a 4-byte big-endian length that
// counts itself and the body, then the body. Decoding a message's fields is left to
// pgproto3.
package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the size of a message's header: the type byte and the length.
const HeaderLen = 5

// Body returns what follows payload's header, unchecked: a message cut short keeps
// what was recorded of its body. It is nil when payload is shorter than a header.
func Body(payload []byte) []byte {
	if len(payload) < HeaderLen {
		return nil
	}
	return payload[HeaderLen:]
}

// CheckedBody returns the body of a whole message: payload must hold a header whose
// length field matches the bytes after the type byte.
func CheckedBody(payload []byte) ([]byte, error) {
	if len(payload) < HeaderLen {
		return nil, errors.New("message shorter than its header")
	}
	if n := int(binary.BigEndian.Uint32(payload[1:HeaderLen])); n != len(payload)-1 {
		return nil, fmt.Errorf("length field %d, message holds %d", n, len(payload)-1)
	}
	return payload[HeaderLen:], nil
}

// CheckedBodyOf is CheckedBody for a message that must have the type byte typ.
func CheckedBodyOf(payload []byte, typ byte) ([]byte, error) {
	if len(payload) >= HeaderLen && payload[0] != typ {
		return nil, fmt.Errorf("type byte %q, expected %q", payload[0], typ)
	}
	return CheckedBody(payload)
}

// FormatCode returns the format code (0 text, 1 binary) of value i under a Bind
// message's list of parameter or result format codes: no codes means all text, one
// code applies to every value, otherwise there is one per value.
func FormatCode(codes []int16, i int) int16 {
	switch {
	case len(codes) == 0:
		return 0
	case len(codes) == 1:
		return codes[0]
	case i < len(codes):
		return codes[i]
	}
	return 0
}

// Decoder is a pgproto3 message.
type Decoder interface{ Decode([]byte) error }

// Decode decodes body into m. pgproto3 panics on some malformed bodies (a Bind
// value with a negative length other than -1, for one); recorded bytes are whatever a
// client sent, so such a panic becomes an error here.
func Decode(m Decoder, body []byte) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("malformed %T: %v", m, v)
		}
	}()
	return m.Decode(body)
}
