package api

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/tapline/tapline/schemas"
)

// frameJSON writes frames as the frames NDJSON stream's lines: the bytes
// json.Encoder gives for frameOut(f), newline included, written field by field.
// Through encoding/json, reflection over every field of every frame (and the hex
// strings frameOut builds) cost more than reading the frames. Strings that repeat
// (session id, direction, protocol, kind, gateway) are encoded once; the rare
// fields (masks, session start and end, denial) still go through encoding/json.
type frameJSON struct {
	strs map[string][]byte
}

// frameJSONStrMax bounds the cache of encoded strings.
const frameJSONStrMax = 64

func newFrameJSON() *frameJSON { return &frameJSON{strs: map[string][]byte{}} }

// append appends f's line to b.
func (e *frameJSON) append(b []byte, f *schemas.Frame) ([]byte, error) {
	if y := f.TS.Year(); y < 0 || y > 9999 {
		// time.Time refuses to marshal these: keep encoding/json's error.
		p, err := json.Marshal(frameOut(f))
		return append(append(b, p...), '\n'), err
	}
	b = append(b, `{"session_id":`...)
	b = e.str(b, f.SessionID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, f.Seq, 10)
	b = append(b, `,"ts":"`...)
	b = f.TS.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","direction":`...)
	b = e.str(b, string(f.Direction))
	b = append(b, `,"protocol":`...)
	b = e.str(b, string(f.Protocol))
	b = append(b, `,"kind":`...)
	b = e.str(b, f.Kind)
	b = append(b, `,"channel":`...)
	b = strconv.AppendInt(b, f.Channel, 10)
	b = append(b, `,"fragment":`...)
	b = strconv.AppendInt(b, int64(f.Fragment), 10)
	b = append(b, `,"final":`...)
	b = strconv.AppendBool(b, f.Final)
	b = append(b, `,"payload":`...)
	if f.Payload == nil {
		b = append(b, "null"...)
	} else {
		b = append(base64.StdEncoding.AppendEncode(append(b, '"'), f.Payload), '"')
	}
	for _, h := range [...]struct {
		name string
		v    []byte
	}{{`,"payload_salt":"`, f.PayloadSalt}, {`,"payload_digest":"`, f.PayloadDigest}, {`,"prev_hash":"`, f.PrevHash}, {`,"hash":"`, f.Hash}} {
		b = append(hex.AppendEncode(append(b, h.name...), h.v), '"')
	}
	b = append(b, `,"gateway_id":`...)
	b = e.str(b, f.GatewayID)
	var err error
	if len(f.Masks) > 0 {
		b, err = appendJSON(append(b, `,"masks":`...), f.Masks)
	}
	if f.Start != nil && err == nil {
		b, err = appendJSON(append(b, `,"start":`...), f.Start)
	}
	if f.Denial != "" && err == nil {
		b, err = appendJSON(append(b, `,"denial":`...), f.Denial)
	}
	if f.End != nil && err == nil {
		b, err = appendJSON(append(b, `,"end":`...), frameOut(&schemas.Frame{End: f.End}).End)
	}
	return append(b, "}\n"...), err
}

// str appends s as a JSON string, as encoding/json writes it.
func (e *frameJSON) str(b []byte, s string) []byte {
	if p, ok := e.strs[s]; ok {
		return append(b, p...)
	}
	p := schemas.AppendJSONString(nil, s, true)
	if len(e.strs) < frameJSONStrMax {
		e.strs[s] = p
	}
	return append(b, p...)
}

func appendJSON(b []byte, v any) ([]byte, error) {
	p, err := json.Marshal(v)
	return append(b, p...), err
}
