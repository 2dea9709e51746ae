package schemas

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

func sampleFrame(t testing.TB) Frame {
	t.Helper()
	id, _ := uuid.NewV7()
	exp := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)
	return Frame{
		SessionID: id.String(), Seq: 0, TS: time.Date(2026, 11, 26, 11, 0, 0, 654321000, time.UTC),
		Direction: Server, Protocol: Postgres, Kind: KindSessionStart, Channel: 3,
		Payload: []byte(`{"x":1}`), Fragment: 0, Final: true, GatewayID: "gw-1",
		Masks: map[string]int64{"email": 2},
		Start: &SessionStart{
			Issuer: "https://idp", Subject: "alice", Email: "a@example.com", Name: "Alice",
			Groups: []string{"dba", "ops"}, TokenID: "jti-1", TokenExpiry: exp, Target: "app",
			TargetAddr: "127.0.0.1:5432", ClientAddr: "127.0.0.1:40000",
			Params: map[string]string{"application_name": "psql"},
		},
		Denial: "not in group",
		End: &SessionEnd{Reason: "client closed", LastSeq: 9, Frames: 10, BytesClient: 100,
			BytesServer: 200, FinalHash: bytes.Repeat([]byte{7}, 32), Signature: []byte{1, 2}, GatewayKey: []byte{3}},
	}
}

func TestFrameRoundTripSingleObjectEncoding(t *testing.T) {
	f := sampleFrame(t)
	if err := Seal(&f, ZeroHash); err != nil {
		t.Fatal(err)
	}
	b, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xC3 || b[1] != 0x01 || binary.LittleEndian.Uint64(b[2:10]) != FrameCodec().Fingerprint() {
		t.Fatalf("not a Single-Object Encoding header: % x", b[:10])
	}
	got, err := FrameCodec().Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, f)
	}
}

func TestFrameWithoutOptionalPartsRoundTrips(t *testing.T) {
	f := Frame{SessionID: uuid.NewString(), Seq: 5, TS: time.UnixMicro(1_700_000_000_000_001).UTC(),
		Direction: Client, Protocol: SSH, Kind: "ssh.channel.data", Payload: []byte("ls\n"), Final: true, GatewayID: "g"}
	if err := Seal(&f, ZeroHash); err != nil {
		t.Fatal(err)
	}
	b, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FrameCodec().Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, f)
	}
}

func TestConfluentWireFormat(t *testing.T) {
	c := FrameCodec().WithSchemaID(42)
	f := sampleFrame(t)
	b, err := c.Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || binary.BigEndian.Uint32(b[1:5]) != 42 {
		t.Fatalf("not Confluent framing: % x", b[:5])
	}
	got, err := c.Decode(b)
	if err != nil || got.Seq != f.Seq || got.Start.Subject != "alice" {
		t.Fatalf("decode: %v %+v", err, got)
	}
	if _, err := FrameCodec().WithSchemaID(7).Decode(b); !errors.Is(err, ErrUnknownSchema) {
		t.Fatalf("wrong registry id must be refused, got %v", err)
	}
}

func TestCommandAndSessionRoundTrip(t *testing.T) {
	exit := int32(2)
	c := Command{SessionID: uuid.NewString(), CommandSeq: 4, SeqEnd: 9, Protocol: Postgres, Target: "app",
		Subject: "alice", Kind: "prepared", Text: "select $1", Params: []string{"1"},
		StartedAt: time.UnixMicro(10).UTC(), EndedAt: time.UnixMicro(20).UTC(), Status: "ok", Rows: 1,
		ExitStatus: &exit, Masks: map[string]int64{"card": 1}}
	cb, err := CommandCodec().Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := CommandCodec().Decode(cb)
	if err != nil || !reflect.DeepEqual(gc, c) {
		t.Fatalf("command round trip: %v\n got %+v\nwant %+v", err, gc, c)
	}
	ok := true
	end := time.UnixMicro(99).UTC()
	s := Session{SessionID: uuid.NewString(), Protocol: SSH, Target: "host", Subject: "bob", Groups: []string{"ops"},
		StartedAt: time.UnixMicro(1).UTC(), EndedAt: &end, Status: StatusEnded, Frames: 3, LastSeq: 2,
		FinalHash: []byte{1}, SignatureOK: &ok, Integrity: []string{"seq gap at 5"}, Version: 2}
	sb, err := SessionCodec().Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := SessionCodec().Decode(sb)
	if err != nil || !reflect.DeepEqual(gs, s) {
		t.Fatalf("session round trip: %v\n got %+v\nwant %+v", err, gs, s)
	}
}

func TestDecodeRejectsHostileInput(t *testing.T) {
	f := sampleFrame(t)
	good, _ := FrameCodec().Encode(&f)
	header := good[:10]
	cases := map[string][]byte{
		"empty":            {},
		"no header":        []byte("hello world, not avro"),
		"unknown print":    append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, good[10:]...),
		"truncated":        good[:len(good)/2],
		"trailing garbage": append(append([]byte{}, good...), 0x00),
		// session_id claims a string of ~2^62 bytes: must fail on the limit, not allocate.
		"huge length": append(append([]byte{}, header...), 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, b := range cases {
		if _, err := FrameCodec().Decode(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestChainDetectsTampering(t *testing.T) {
	id := uuid.NewString()
	var frames []Frame
	prev := ZeroHash
	for i := range 4 {
		f := Frame{SessionID: id, Seq: int64(i), TS: time.UnixMicro(int64(i)).UTC(), Direction: Client,
			Protocol: Postgres, Kind: "Query", Payload: []byte{byte(i)}, Final: true, GatewayID: "g"}
		if err := Seal(&f, prev); err != nil {
			t.Fatal(err)
		}
		prev = f.Hash
		frames = append(frames, f)
	}
	prev = ZeroHash
	for i := range frames {
		if err := CheckLink(&frames[i], prev); err != nil {
			t.Fatalf("intact chain: %v", err)
		}
		prev = frames[i].Hash
	}
	changed := frames[2]
	changed.Payload = []byte("DROP TABLE x")
	if err := CheckLink(&changed, frames[1].Hash); err == nil {
		t.Error("changed payload not detected")
	}
	header := frames[2]
	header.Kind = "Terminate"
	if err := CheckLink(&header, frames[1].Hash); err == nil {
		t.Error("changed header not detected")
	}
	if err := CheckLink(&frames[3], frames[1].Hash); err == nil {
		t.Error("deleted frame not detected")
	}
	masked := frames[2]
	masked.Payload, masked.PayloadSalt, masked.Masks = []byte{0}, nil, map[string]int64{"card": 1}
	if err := CheckLink(&masked, frames[1].Hash); err != nil {
		t.Errorf("masked frame must still chain: %v", err)
	}
	masked.Masks = nil
	if err := CheckLink(&masked, frames[1].Hash); err == nil {
		t.Error("salt dropped without a mask record not detected")
	}
}

func TestSessionEndSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	id := uuid.NewString()
	e := SessionEnd{LastSeq: 7, FinalHash: bytes.Repeat([]byte{9}, 32)}
	if err := SignEnd(priv, id, &e); err != nil {
		t.Fatal(err)
	}
	if err := VerifyEnd(pub, id, &e); err != nil {
		t.Fatal(err)
	}
	forged := e
	forged.LastSeq = 6
	if VerifyEnd(pub, id, &forged) == nil {
		t.Error("forged last_seq verified")
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if VerifyEnd(other, id, &e) == nil {
		t.Error("signature verified under another key")
	}
}

// The v2 signature covers the whole end record: a rewritten reason or byte count
// fails, and a recording signed with the v1 message still verifies as such.
func TestSessionEndSignatureCoversRecord(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	id := uuid.NewString()
	e := SessionEnd{Reason: "client closed", LastSeq: 7, Frames: 8, BytesClient: 10, BytesServer: 20, FinalHash: bytes.Repeat([]byte{9}, 32)}
	if err := SignEnd(priv, id, &e); err != nil {
		t.Fatal(err)
	}
	if v, err := EndSignatureVersion(pub, id, &e); err != nil || v != EndSigRecord {
		t.Fatalf("version %d, %v; want %d", v, err, EndSigRecord)
	}
	for name, change := range map[string]func(*SessionEnd){
		"reason":       func(e *SessionEnd) { e.Reason = "token expired" },
		"frames":       func(e *SessionEnd) { e.Frames++ },
		"bytes_client": func(e *SessionEnd) { e.BytesClient = 0 },
		"bytes_server": func(e *SessionEnd) { e.BytesServer = 1 << 40 },
	} {
		forged := e
		change(&forged)
		if VerifyEnd(pub, id, &forged) == nil {
			t.Errorf("end record with a rewritten %s verified", name)
		}
	}
	msg, _ := SignatureMessage(id, e.LastSeq, e.FinalHash)
	legacy := e
	legacy.Signature = ed25519.Sign(priv, msg)
	if v, err := EndSignatureVersion(pub, id, &legacy); err != nil || v != EndSigTip {
		t.Fatalf("v1 signature: version %d, %v; want %d", v, err, EndSigTip)
	}
}

func TestMaskedFrameSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	f := Frame{SessionID: uuid.NewString(), Seq: 3, Payload: []byte("SELECT '***'"), Masks: map[string]int64{"email": 1, "jwt": 2},
		Hash: bytes.Repeat([]byte{7}, 32)}
	if err := SignMasked(priv, &f); err != nil {
		t.Fatal(err)
	}
	if err := VerifyMasked(pub, &f); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Frame){
		"payload": func(f *Frame) { f.Payload = []byte("SELECT 'x'") },
		"masks":   func(f *Frame) { f.Masks = map[string]int64{"email": 2, "jwt": 2} },
		"seq":     func(f *Frame) { f.Seq = 4 },
		"hash":    func(f *Frame) { f.Hash = bytes.Repeat([]byte{8}, 32) },
		"sig":     func(f *Frame) { f.ProcessorSig = nil },
	} {
		g := f
		change(&g)
		if VerifyMasked(pub, &g) == nil {
			t.Errorf("masked frame with a changed %s verified", name)
		}
	}
}

func FuzzFrameDecode(f *testing.F) {
	fr := sampleFrame(f)
	good, _ := FrameCodec().Encode(&fr)
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := FrameCodec().Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode again.
		if _, err := FrameCodec().Encode(&v); err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
	})
}

// Confluent-framed values go through the id resolver: whatever id and body arrive,
// decoding fails cleanly or yields a frame that encodes again.
func FuzzConfluentFrameDecode(f *testing.F) {
	fr := sampleFrame(f)
	codec := FrameCodec().WithSchemaID(7).WithResolver(func(id uint32) (uint64, bool) {
		return FrameCodec().Fingerprint(), id == 8 // another id of the same schema
	})
	good, _ := codec.Encode(&fr)
	f.Add(good)
	f.Add(append([]byte{0, 0, 0, 0, 8}, good[5:]...))
	f.Add([]byte{0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := codec.Decode(b)
		if err != nil {
			return
		}
		if _, err := codec.Encode(&v); err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
	})
}

func TestProtocolValidMatchesTheEnum(t *testing.T) {
	for _, p := range protocolSymbols {
		if !p.Valid() {
			t.Errorf("%s is in the Avro enum but not Valid", p)
		}
	}
	for _, p := range []Protocol{"", "postgres", "FTP"} {
		if p.Valid() {
			t.Errorf("%q is Valid", p)
		}
	}
}
