package schemas

import (
	"fmt"
	"slices"
	"time"
)

// Frames are encoded by hand rather than through goavro's generic walk: building a
// map[string]any per frame and walking it cost a large share of the recorder's and
// processors' CPU. The output is the Avro binary encoding of frame.avsc, byte for
// byte what goavro writes for the same frame (tests compare the two); frame_decode.go
// reads it back the same way. Any change to frame.avsc must be mirrored here.

// Enum symbols in schema order; the Avro encoding of an enum is the symbol's index.
var (
	directionSymbols = []Direction{Client, Server}
	protocolSymbols  = []Protocol{Postgres, SSH, Kubernetes, HTTP}
)

// appendFrame returns header followed by f's Avro binary body, in one allocation.
// It refuses what the schema cannot hold (as goavro did) so frameBinary need not check.
func appendFrame(header []byte, f *Frame) ([]byte, error) {
	if !slices.Contains(directionSymbols, f.Direction) {
		return nil, fmt.Errorf("direction %q is not one of %v", f.Direction, directionSymbols)
	}
	if !slices.Contains(protocolSymbols, f.Protocol) {
		return nil, fmt.Errorf("protocol %q is not one of %v", f.Protocol, protocolSymbols)
	}
	buf := make([]byte, 0, len(header)+frameSizeHint(f))
	return frameBinary(append(buf, header...), f), nil
}

// frameSizeHint bounds the encoded size, so the buffer is allocated once instead of
// grown while a large payload is copied in. The constants cover the fixed fields with
// longs at their widest (10 bytes) and length prefixes at 5 (any length under 32 GiB).
func frameSizeHint(f *Frame) int {
	n := 128 + len(f.SessionID) + len(f.Kind) + len(f.Payload) + len(f.PayloadSalt) +
		len(f.PayloadDigest) + len(f.PrevHash) + len(f.Hash) + len(f.GatewayID) + len(f.Denial)
	for k := range f.Masks {
		n += len(k) + 2*binary64Max
	}
	if f.Start != nil {
		n += startSizeHint(f.Start)
	}
	if e := f.End; e != nil {
		n += 64 + len(e.Reason) + len(e.FinalHash) + len(e.Signature) + len(e.GatewayKey)
	}
	if p := f.ProcessorSig; p != nil {
		n += 16 + len(p.Key) + len(p.Signature)
	}
	return n
}

func startSizeHint(s *SessionStart) int {
	n := 96 + len(s.Issuer) + len(s.Subject) + len(s.Email) + len(s.Name) + len(s.TokenID) +
		len(s.Target) + len(s.TargetAddr) + len(s.ClientAddr)
	for _, g := range s.Groups {
		n += len(g) + binary64Max
	}
	for k, v := range s.Params {
		n += len(k) + len(v) + 2*binary64Max
	}
	return n
}

// binary64Max is the longest varint a long can take.
const binary64Max = 10

// frameBinary appends the Avro binary encoding of f, fields in schema order.
// Direction and Protocol must be schema symbols (appendFrame checks).
func frameBinary(buf []byte, f *Frame) []byte {
	buf = appendString(buf, f.SessionID)
	buf = appendLong(buf, f.Seq)
	buf = appendTimeMicros(buf, f.TS)
	buf = appendLong(buf, int64(slices.Index(directionSymbols, f.Direction)))
	buf = appendLong(buf, int64(slices.Index(protocolSymbols, f.Protocol)))
	buf = appendString(buf, f.Kind)
	buf = appendLong(buf, f.Channel)
	buf = appendBytes(buf, f.Payload)
	buf = appendInt(buf, f.Fragment)
	buf = appendBool(buf, f.Final)
	buf = appendBytes(buf, f.PayloadSalt)
	buf = appendBytes(buf, f.PayloadDigest)
	buf = appendBytes(buf, f.PrevHash)
	buf = appendBytes(buf, f.Hash)
	buf = appendString(buf, f.GatewayID)
	buf = appendMap(buf, f.Masks, appendLong)
	buf = appendStart(buf, f.Start)
	buf = appendDenial(buf, f.Denial)
	buf = appendEnd(buf, f.End)
	return appendProcessorSig(buf, f.ProcessorSig)
}

// Union branch indexes: every optional field is ["null", T].
const (
	unionNull  = 0
	unionValue = 1
)

func appendStart(buf []byte, s *SessionStart) []byte {
	if s == nil {
		return appendLong(buf, unionNull)
	}
	buf = appendLong(buf, unionValue)
	buf = appendString(buf, s.Issuer)
	buf = appendString(buf, s.Subject)
	buf = appendString(buf, s.Email)
	buf = appendString(buf, s.Name)
	buf = appendStrings(buf, s.Groups)
	buf = appendString(buf, s.TokenID)
	buf = appendTokenExpiry(buf, s.TokenExpiry)
	buf = appendString(buf, s.Target)
	buf = appendString(buf, s.TargetAddr)
	buf = appendString(buf, s.ClientAddr)
	return appendMap(buf, s.Params, appendString)
}

// appendTokenExpiry writes null for the zero time, as frameToNative does: a token
// without an expiry is recorded as having none, not as year 1.
func appendTokenExpiry(buf []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendLong(buf, unionNull)
	}
	return appendTimeMicros(appendLong(buf, unionValue), t)
}

// appendDenial writes null for "", as frameToNative does.
func appendDenial(buf []byte, d string) []byte {
	if d == "" {
		return appendLong(buf, unionNull)
	}
	return appendString(appendLong(buf, unionValue), d)
}

func appendEnd(buf []byte, e *SessionEnd) []byte {
	if e == nil {
		return appendLong(buf, unionNull)
	}
	buf = appendLong(buf, unionValue)
	buf = appendString(buf, e.Reason)
	buf = appendLong(buf, e.LastSeq)
	buf = appendLong(buf, e.Frames)
	buf = appendLong(buf, e.BytesClient)
	buf = appendLong(buf, e.BytesServer)
	buf = appendBytes(buf, e.FinalHash)
	buf = appendBytes(buf, e.Signature)
	return appendBytes(buf, e.GatewayKey)
}

func appendProcessorSig(buf []byte, p *ProcessorSig) []byte {
	if p == nil {
		return appendLong(buf, unionNull)
	}
	buf = appendLong(buf, unionValue)
	buf = appendBytes(buf, p.Key)
	return appendBytes(buf, p.Signature)
}

// appendLong writes a zigzag varint, low 7-bit groups first.
func appendLong(buf []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

// appendInt zigzags in 32 bits, as Avro's int does; for every int32 the varint is
// the same as the long's, but this keeps the rule visible.
func appendInt(buf []byte, v int32) []byte {
	u := uint64(uint32(v<<1) ^ uint32(v>>31))
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

func appendBool(buf []byte, v bool) []byte { return append(buf, boolByte(v)) }

func appendBytes(buf, b []byte) []byte {
	return append(appendLong(buf, int64(len(b))), b...)
}

func appendString(buf []byte, s string) []byte {
	return append(appendLong(buf, int64(len(s))), s...)
}

// appendTimeMicros uses goavro's arithmetic (whole seconds, then the sub-second
// micros) so times far from the epoch encode to the same long.
func appendTimeMicros(buf []byte, t time.Time) []byte {
	return appendLong(buf, t.Unix()*1e6+int64(t.Nanosecond()/1e3))
}

// appendStrings writes an array in blocks of at most maxBlockCount items, which is
// how goavro splits them (its MaxBlockCount is capped to ours) and all a reader accepts.
func appendStrings(buf []byte, s []string) []byte {
	for len(s) > 0 {
		block := s[:min(len(s), maxBlockCount)]
		buf = appendLong(buf, int64(len(block)))
		for _, v := range block {
			buf = appendString(buf, v)
		}
		s = s[len(block):]
	}
	return appendLong(buf, 0)
}

// appendMap writes a map's entries in key order, in blocks like appendStrings.
// goavro writes them in Go's random iteration order, so any order decodes the same;
// sorting makes a frame's encoding repeatable. The keys start in a small array on the
// stack because frame maps (mask counts, startup parameters) hold a handful of keys.
func appendMap[V any](buf []byte, m map[string]V, value func([]byte, V) []byte) []byte {
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for len(keys) > 0 {
		block := keys[:min(len(keys), maxBlockCount)]
		buf = appendLong(buf, int64(len(block)))
		for _, k := range block {
			buf = value(appendString(buf, k), m[k])
		}
		keys = keys[len(block):]
	}
	return appendLong(buf, 0)
}
