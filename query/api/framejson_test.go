package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// encodeFrameStd is the frames stream's line as encoding/json writes it.
func encodeFrameStd(f *schemas.Frame) ([]byte, error) {
	var buf bytes.Buffer
	err := json.NewEncoder(&buf).Encode(frameOut(f))
	return buf.Bytes(), err
}

func jsonSampleFrames() []schemas.Frame {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	h := bytes.Repeat([]byte{0xab}, 32)
	base := schemas.Frame{SessionID: "s-1", Seq: 7, TS: ts, Direction: schemas.Client, Protocol: schemas.Postgres,
		Kind: "Query", Channel: 2, Fragment: 1, Final: true, Payload: []byte("SELECT 1"), PayloadSalt: h,
		PayloadDigest: h, PrevHash: h, Hash: h, GatewayID: "gw-1"}
	var out []schemas.Frame
	add := func(mod func(f *schemas.Frame)) {
		f := base
		mod(&f)
		out = append(out, f)
	}
	add(func(f *schemas.Frame) {})
	add(func(f *schemas.Frame) { f.Payload = nil; f.PrevHash = nil })
	add(func(f *schemas.Frame) { f.Payload = []byte{}; f.PayloadSalt = []byte{} })
	add(func(f *schemas.Frame) { f.Payload = []byte{0xff, 0, '<', '&', 0xe2, 0x80, 0xa8} })
	add(func(f *schemas.Frame) {
		f.SessionID, f.Kind, f.GatewayID = "<s&id>", "k\u2028\u2029\x00\x1f\"\\\b\f\n\r\t", "gw\xff\xfe"
		f.Seq, f.Channel, f.Fragment = -1, -1<<63, -1<<31
		f.Final = false
	})
	add(func(f *schemas.Frame) {
		f.Masks = map[string]int64{"b<": 2, "a": 1}
		f.Denial = "denied: <policy> & \xff"
		f.Start = &schemas.SessionStart{Subject: "alice", Groups: []string{"dba"}, Params: map[string]string{"x": "<y>"}}
		f.End = &schemas.SessionEnd{Reason: "closed", Frames: 9, FinalHash: h, Signature: []byte{1}}
	})
	add(func(f *schemas.Frame) { f.Masks = map[string]int64{} })
	add(func(f *schemas.Frame) { f.TS = time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 5*3600+1800)) })
	add(func(f *schemas.Frame) { f.TS = time.Time{} })
	add(func(f *schemas.Frame) { f.TS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })
	add(func(f *schemas.Frame) { f.TS = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) })
	return out
}

// The frames stream writes each frame byte for byte as encoding/json did.
func TestFrameJSONMatchesEncodingJSON(t *testing.T) {
	e := newFrameJSON()
	for i, f := range jsonSampleFrames() {
		checkFrameJSON(t, e, i, &f)
	}
}

func checkFrameJSON(t *testing.T, e *frameJSON, i int, f *schemas.Frame) {
	t.Helper()
	want, werr := encodeFrameStd(f)
	got, gerr := e.append(nil, f)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("frame %d: error %v, encoding/json %v", i, gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("frame %d:\n got %s\nwant %s", i, got, want)
	}
}

// Agents choose payloads and, through the protocol, much of a frame's strings.
func FuzzFrameJSON(f *testing.F) {
	f.Add("s-1", "Query", "", []byte("SELECT 1"), int64(1700000000123456789), "k")
	f.Add("<&>", "k\u2028", "denied\xff", []byte{0xff}, int64(-62135596800000000), "\x00")
	e := newFrameJSON()
	f.Fuzz(func(t *testing.T, id, kind, denial string, payload []byte, ns int64, mask string) {
		fr := jsonSampleFrames()[0]
		fr.SessionID, fr.Kind, fr.Denial, fr.Payload, fr.TS = id, kind, denial, payload, time.Unix(0, ns).UTC()
		if mask != "" {
			fr.Masks = map[string]int64{mask: ns}
		}
		checkFrameJSON(t, e, 0, &fr)
	})
}
