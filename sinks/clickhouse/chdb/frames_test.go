package chdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// The types chDB reports for the frames columns of the full schema.
var frameTypes = map[string]string{
	"session_id": "String", "seq": "Int64", "ts": "DateTime64(6, 'UTC')", "direction": "LowCardinality(String)",
	"protocol": "LowCardinality(String)", "kind": "LowCardinality(String)", "channel": "Int64", "fragment": "Int32",
	"final": "Bool", "payload": "String", "payload_salt": "String", "payload_digest": "String", "prev_hash": "String",
	"hash": "String", "gateway_id": "LowCardinality(String)", "masks": "Map(LowCardinality(String), Int64)",
	"session_start": "String", "denial": "String", "session_end": "String", "processor_sig": "String",
}

// frameRowsRB encodes frames as chDB answers a frames read: RowBinaryWithNamesAndTypes.
func frameRowsRB(t testing.TB, frames []schemas.Frame) []byte {
	cols := clickhouse.FrameColumns()
	b := binary.AppendUvarint(nil, uint64(len(cols)))
	for _, c := range cols {
		b = appendStr(b, c)
	}
	for _, c := range cols {
		b = appendStr(b, frameTypes[c])
	}
	for _, f := range frames {
		for _, c := range cols {
			b = appendFrameColumn(t, b, c, &f)
		}
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendFrameColumn(t testing.TB, b []byte, col string, f *schemas.Frame) []byte {
	js := func(v any) string {
		if reflect.ValueOf(v).IsNil() {
			return ""
		}
		p, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	switch col {
	case "session_id":
		return appendStr(b, f.SessionID)
	case "seq":
		return binary.LittleEndian.AppendUint64(b, uint64(f.Seq))
	case "ts":
		return binary.LittleEndian.AppendUint64(b, uint64(f.TS.UnixMicro()))
	case "direction":
		return appendStr(b, string(f.Direction))
	case "protocol":
		return appendStr(b, string(f.Protocol))
	case "kind":
		return appendStr(b, f.Kind)
	case "channel":
		return binary.LittleEndian.AppendUint64(b, uint64(f.Channel))
	case "fragment":
		return binary.LittleEndian.AppendUint32(b, uint32(f.Fragment))
	case "final":
		if f.Final {
			return append(b, 1)
		}
		return append(b, 0)
	case "payload":
		return appendStr(b, string(f.Payload))
	case "payload_salt":
		return appendStr(b, string(f.PayloadSalt))
	case "payload_digest":
		return appendStr(b, string(f.PayloadDigest))
	case "prev_hash":
		return appendStr(b, string(f.PrevHash))
	case "hash":
		return appendStr(b, string(f.Hash))
	case "gateway_id":
		return appendStr(b, f.GatewayID)
	case "masks":
		keys := clickhouse.SortedKeys(f.Masks)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = binary.LittleEndian.AppendUint64(appendStr(b, k), uint64(f.Masks[k]))
		}
		return b
	case "session_start":
		return appendStr(b, js(f.Start))
	case "denial":
		return appendStr(b, f.Denial)
	case "session_end":
		return appendStr(b, js(f.End))
	case "processor_sig":
		if f.ProcessorSig == nil {
			return appendStr(b, "")
		}
		return appendStr(b, string(f.ProcessorSig.Key)+string(f.ProcessorSig.Signature))
	}
	t.Fatalf("column %s", col)
	return nil
}

// genericFrames decodes a frames read the way every other query is read:
// DecodeRowBinary, then clickhouse.ScanFrame row by row.
func genericFrames(b []byte) ([]schemas.Frame, error) {
	tbl, err := DecodeRowBinary(b)
	if err != nil {
		return nil, err
	}
	rs := &rows{t: tbl, i: -1}
	var out []schemas.Frame
	for rs.Next() {
		f, err := clickhouse.ScanFrame(rs, false)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func sampleFrames() []schemas.Frame {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	h := func(c byte) []byte { return bytes.Repeat([]byte{c}, 32) }
	base := schemas.Frame{
		SessionID: "s-1", TS: ts, Direction: schemas.Client, Protocol: schemas.Postgres,
		Kind: "Query", Final: true, PayloadSalt: h(1), PayloadDigest: h(2), PrevHash: h(3), Hash: h(4), GatewayID: "gw-1",
	}
	var out []schemas.Frame
	add := func(mod func(f *schemas.Frame)) {
		f := base
		f.Seq = int64(len(out))
		f.TS = ts.Add(time.Duration(f.Seq) * time.Microsecond)
		mod(&f)
		out = append(out, f)
	}
	add(func(f *schemas.Frame) {
		f.Kind = "session.start"
		f.Start = &schemas.SessionStart{Issuer: "https://idp", Subject: "alice", Groups: []string{"dba"},
			TokenExpiry: ts.Add(time.Hour), Params: map[string]string{"database": "app"}}
		f.Payload = []byte{}
	})
	add(func(f *schemas.Frame) { f.Payload = []byte("SELECT 1") })
	add(func(f *schemas.Frame) {
		f.Payload = []byte{0xff, 0xfe, 0x00, 0x80, 'x'} // not UTF-8
		f.Masks = map[string]int64{"email": 2, "card": 1}
		f.ProcessorSig = &schemas.ProcessorSig{Key: h(5), Signature: bytes.Repeat([]byte{6}, 64)}
	})
	add(func(f *schemas.Frame) {
		f.Payload = bytes.Repeat([]byte("large payload \x00\xc3"), 1<<16) // 1 MiB
		f.Fragment, f.Final, f.Channel = 3, false, -7
		f.Direction = schemas.Server
	})
	add(func(f *schemas.Frame) {
		f.PayloadSalt, f.PayloadDigest, f.PrevHash = []byte{}, []byte{}, []byte{}
		f.Payload = []byte{}
		f.Denial = "policy: denied"
		f.ProcessorSig = &schemas.ProcessorSig{Signature: []byte("short")}
	})
	add(func(f *schemas.Frame) {
		f.Kind = "session.end"
		f.TS = time.Unix(-1, 999999000).UTC() // before the epoch
		f.End = &schemas.SessionEnd{Reason: "client closed", Frames: 6}
		f.Payload = []byte{}
	})
	return out
}

// The direct decoder gives the same frames as the generic one, field for field:
// empty and absent start, end, masks and signature, large and non-UTF-8 payloads.
func TestDecodeFramesMatchesGeneric(t *testing.T) {
	b := frameRowsRB(t, sampleFrames())
	want, err := genericFrames(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeFrames(b, len(want))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sampleFrames()) || !reflect.DeepEqual(got, want) {
		t.Fatalf("direct decode differs from the generic one:\n got %+v\nwant %+v", got, want)
	}
	for i, f := range got {
		if f.Masks != nil && len(f.Masks) == 0 || f.Payload == nil {
			t.Errorf("frame %d: masks %v payload nil %v", i, f.Masks, f.Payload == nil)
		}
	}
	// A frame's byte fields do not share capacity: appending to one leaves the next alone.
	f := got[2]
	salt := append([]byte(nil), f.PayloadSalt...)
	_ = append(f.Payload, "more"...)
	if !bytes.Equal(f.PayloadSalt, salt) {
		t.Fatal("appending to the payload changed the salt")
	}
}

func TestDecodeFramesEmpty(t *testing.T) {
	got, err := DecodeFrames(nil, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty result: %v %v", got, err)
	}
	got, err = DecodeFrames(frameRowsRB(t, nil), 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("header only: %v %v", got, err)
	}
}

// Every truncation of a valid result is an error, never a panic, unless it falls
// between two rows (RowBinary does not count its rows): then it is the frames before.
func TestDecodeFramesTruncated(t *testing.T) {
	fs := sampleFrames()
	fs[3].Payload = fs[3].Payload[:300]
	b := frameRowsRB(t, fs)
	want, err := DecodeFrames(b, len(fs))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(b); n++ {
		got, err := DecodeFrames(b[:n], len(fs))
		if err != nil {
			continue
		}
		if n != len(frameRowsRB(t, fs[:len(got)])) || !reflect.DeepEqual(got, want[:len(got)]) {
			t.Fatalf("%d of %d bytes: %d frames and no error", n, len(b), len(got))
		}
	}
}

func TestDecodeFramesRejects(t *testing.T) {
	b := frameRowsRB(t, sampleFrames()[:1])
	for _, c := range []struct {
		name, from, to, want string
	}{
		{"unknown column", "\x07payload", "\x07paxload", "not a frame column"},
		{"wrong type", "\x05Int64", "\x05Int32", "type Int32"},
		{"ts precision", "DateTime64(6, 'UTC')", "DateTime64(x, 'UTC')", "precision"},
	} {
		bad := bytes.Replace(b, []byte(c.from), []byte(c.to), 1)
		if _, err := DecodeFrames(bad, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// A session_start that is not JSON fails as it does on the generic path.
	fs := sampleFrames()[:1]
	bad := bytes.Replace(frameRowsRB(t, fs), []byte(`{"issuer"`), []byte(`{"issuer!`), 1)
	var se *json.SyntaxError
	if _, err := DecodeFrames(bad, 1); !errors.As(err, &se) {
		t.Errorf("bad session_start: %v", err)
	}
}

// Columns may come in any order: each is read by its name.
func TestDecodeFramesColumnOrder(t *testing.T) {
	fs := sampleFrames()
	cols := clickhouse.FrameColumns()
	sort.Strings(cols)
	b := binary.AppendUvarint(nil, uint64(len(cols)))
	for _, c := range cols {
		b = appendStr(b, c)
	}
	for _, c := range cols {
		b = appendStr(b, frameTypes[c])
	}
	for i := range fs {
		for _, c := range cols {
			b = appendFrameColumn(t, b, c, &fs[i])
		}
	}
	got, err := DecodeFrames(b, len(fs))
	if err != nil {
		t.Fatal(err)
	}
	want, err := genericFrames(frameRowsRB(t, fs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("sorted columns decode to other frames")
	}
}
