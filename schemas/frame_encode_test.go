package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/linkedin/goavro/v2"
)

// goavroSOE is what Encode wrote before frames were encoded directly.
func goavroSOE(t testing.TB, f *Frame) []byte {
	t.Helper()
	b, err := FrameCodec().current.SingleFromNative(nil, frameToNative(f))
	if err != nil {
		t.Fatalf("goavro: %v", err)
	}
	return b
}

var (
	longMapCodec   = mustCodec(`{"type":"map","values":"long"}`)
	stringMapCodec = mustCodec(`{"type":"map","values":"string"}`)
	longCodec      = mustCodec(`"long"`)
)

func mustCodec(schema string) *goavro.Codec {
	c, err := goavro.NewCodec(schema)
	if err != nil {
		panic(err)
	}
	return c
}

// goavroMapSorted is goavro's encoding of m as one block with entries in key order:
// each entry is cut from goavro's encoding of a one-entry map (count 1, entry, 0).
func goavroMapSorted(t testing.TB, c *goavro.Codec, m map[string]any) []byte {
	t.Helper()
	if len(m) == 0 {
		return []byte{0}
	}
	out, _ := longCodec.BinaryFromNative(nil, int64(len(m)))
	for _, k := range slices.Sorted(mapsKeys(m)) {
		one, err := c.BinaryFromNative(nil, map[string]any{k: m[k]})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, one[1:len(one)-1]...)
	}
	return append(out, 0)
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// goavroSorted is goavro's encoding of f with every map's entries in key order.
// goavro writes map entries in Go's random iteration order, so with two or more keys
// its bytes vary from run to run; this splices goavro's own encodings of the maps,
// in the order frameBinary writes, into goavro's encoding of f with empty maps.
func goavroSorted(t testing.TB, f *Frame) []byte {
	t.Helper()
	g := *f
	g.Masks = nil
	if f.Start != nil {
		s := *f.Start
		s.Params = nil
		g.Start = &s
	}
	full := goavroSOE(t, &g)
	// An empty map is one 0 byte; find it by encoding f cut off right after it.
	head := g
	head.Start, head.Denial, head.End, head.ProcessorSig = nil, "", nil, nil
	masksAt := len(goavroSOE(t, &head)) - 5 // masks, then null start, denial, end, processor_sig
	out := append([]byte{}, full[:masksAt]...)
	out = append(out, goavroMapSorted(t, longMapCodec, longMap(f.Masks))...)
	if f.Start == nil {
		return append(out, full[masksAt+1:]...)
	}
	mid := g
	mid.Denial, mid.End, mid.ProcessorSig = "", nil, nil
	paramsAt := len(goavroSOE(t, &mid)) - 4 // params, then null denial, end, processor_sig
	out = append(out, full[masksAt+1:paramsAt]...)
	out = append(out, goavroMapSorted(t, stringMapCodec, stringMap(f.Start.Params))...)
	return append(out, full[paramsAt+1:]...)
}

func maxMapLen(f *Frame) int {
	n := len(f.Masks)
	if f.Start != nil {
		n = max(n, len(f.Start.Params))
	}
	return n
}

func TestFrameBinaryMatchesGoavro(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 1))
	n := 400
	if testing.Short() {
		n = 150
	}
	for i := range n {
		f := randomFrame(r)
		got, err := FrameCodec().Encode(&f)
		if err != nil {
			t.Fatalf("seed %d frame %d: %v", seed, i, err)
		}
		raw := goavroSOE(t, &f)
		if maxMapLen(&f) <= 1 && !bytes.Equal(got, raw) {
			t.Fatalf("seed %d frame %d: differs from goavro at byte %d\n got % x\nwant % x", seed, i, firstDiff(got, raw), head(got), head(raw))
		}
		if want := goavroSorted(t, &f); !bytes.Equal(got, want) {
			t.Fatalf("seed %d frame %d: differs from goavro (maps in key order) at byte %d\n got % x\nwant % x", seed, i, firstDiff(got, want), head(got), head(want))
		}
		if len(got) != len(raw) {
			t.Fatalf("seed %d frame %d: %d bytes, goavro %d", seed, i, len(got), len(raw))
		}
		back, err := FrameCodec().Decode(got)
		if err != nil {
			t.Fatalf("seed %d frame %d: decode: %v", seed, i, err)
		}
		if want := decoded(f); !reflect.DeepEqual(normalized(back), want) {
			t.Fatalf("seed %d frame %d: round trip differs\n got %+v\nwant %+v", seed, i, normalized(back), want)
		}
	}
}

// The Confluent framing carries the same Avro body after its 5-byte header.
func TestFrameBinaryConfluentFraming(t *testing.T) {
	f := sampleFrame(t)
	f.Start.Params = map[string]string{"user": "alice"} // one key: goavro's order is fixed
	got, err := FrameCodec().WithSchemaID(42).Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := FrameCodec().current.BinaryFromNative([]byte{0, 0, 0, 0, 42}, frameToNative(&f))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("differs at byte %d\n got % x\nwant % x", firstDiff(got, want), got, want)
	}
}

func TestFrameEncodeRejectsUnknownSymbols(t *testing.T) {
	for name, mut := range map[string]func(*Frame){
		"direction": func(f *Frame) { f.Direction = "SIDEWAYS" },
		"protocol":  func(f *Frame) { f.Protocol = "" },
	} {
		f := sampleFrame(t)
		mut(&f)
		_, err := FrameCodec().Encode(&f)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: want an error naming the field, got %v", name, err)
		}
	}
}

// Arrays and maps longer than a reader accepts in one block are split as goavro
// splits them.
func TestFrameBinarySplitsLongBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes a million-entry frame")
	}
	f := sampleFrame(t)
	f.Start.Params = nil
	f.Masks = nil
	f.Start.Groups = make([]string, maxBlockCount+3)
	for i := range f.Start.Groups {
		f.Start.Groups[i] = fmt.Sprint(i % 100)
	}
	got, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	if want := goavroSOE(t, &f); !bytes.Equal(got, want) {
		t.Fatalf("groups differ from goavro at byte %d", firstDiff(got, want))
	}
	f.Start.Groups = nil
	f.Masks = make(map[string]int64, maxBlockCount+3)
	for i := range maxBlockCount + 3 {
		f.Masks[fmt.Sprint(i)] = int64(i)
	}
	got, err = FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	if want := goavroSOE(t, &f); len(got) != len(want) {
		t.Fatalf("masks: %d bytes, goavro %d", len(got), len(want))
	}
	back, err := FrameCodec().Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Masks, f.Masks) {
		t.Fatal("masks did not round trip")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func head(b []byte) []byte { return b[:min(len(b), 256)] }

func randomFrame(r *rand.Rand) Frame {
	f := Frame{
		SessionID: uuid.NewString(), Seq: randLong(r), TS: randTime(r),
		Direction: directionSymbols[r.IntN(len(directionSymbols))],
		Protocol:  protocolSymbols[r.IntN(len(protocolSymbols))],
		Kind:      randString(r, 20), Channel: randLong(r), Payload: randPayload(r),
		Fragment: int32(randLong(r)), Final: r.IntN(2) == 0,
		PayloadSalt: randBytes(r, 16), PayloadDigest: randBytes(r, 32),
		PrevHash: randBytes(r, 32), Hash: randBytes(r, 32),
		GatewayID: randString(r, 12), Masks: randMasks(r),
	}
	if r.IntN(3) == 0 {
		f.Start = randStart(r)
	}
	if r.IntN(3) == 0 {
		f.Denial = randString(r, 40)
	}
	if r.IntN(3) == 0 {
		f.End = &SessionEnd{Reason: randString(r, 30), LastSeq: randLong(r), Frames: randLong(r),
			BytesClient: randLong(r), BytesServer: randLong(r), FinalHash: randBytes(r, 32),
			Signature: randBytes(r, 64), GatewayKey: randBytes(r, 32)}
	}
	if r.IntN(3) == 0 {
		f.ProcessorSig = &ProcessorSig{Key: randBytes(r, 32), Signature: randBytes(r, 64)}
	}
	return f
}

func randStart(r *rand.Rand) *SessionStart {
	s := &SessionStart{
		Issuer: randString(r, 30), Subject: randString(r, 20), Email: randString(r, 20),
		Name: randString(r, 20), TokenID: randString(r, 10), Target: randString(r, 10),
		TargetAddr: randString(r, 20), ClientAddr: randString(r, 20),
	}
	if r.IntN(2) == 0 {
		s.TokenExpiry = randTime(r)
	}
	for range r.IntN(5) {
		s.Groups = append(s.Groups, randString(r, 10))
	}
	if n := r.IntN(6); n > 0 {
		s.Params = map[string]string{}
		for range n {
			s.Params[randString(r, 12)] = randString(r, 30)
		}
	}
	return s
}

func randMasks(r *rand.Rand) map[string]int64 {
	n := r.IntN(5)
	if r.IntN(10) == 0 {
		n = 40
	}
	if n == 0 {
		return nil
	}
	m := map[string]int64{}
	for range n {
		m[randString(r, 16)] = randLong(r)
	}
	return m
}

// randLong favours the varint edges: small, each 7-bit boundary, and the extremes.
func randLong(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return int64(r.IntN(200)) - 100
	case 1:
		return []int64{0, -1, 63, -64, 64, 8191, 8192, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64}[r.IntN(11)]
	case 2:
		return r.Int64() >> r.IntN(63)
	}
	return -r.Int64()
}

// randTime spans well before the epoch to far after it, sometimes with nanoseconds
// the encoding drops, sometimes the zero time.
func randTime(r *rand.Rand) time.Time {
	switch r.IntN(5) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(r.Int64N(1e11)-5e10, r.Int64N(1e9)).UTC()
	}
	return time.UnixMicro(r.Int64N(2e17) - 1e17).UTC()
}

func randPayload(r *rand.Rand) []byte {
	switch r.IntN(20) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		return randBytes(r, 1<<20+r.IntN(1<<16))
	case 3:
		return randBytes(r, 64<<10)
	}
	return randBytes(r, r.IntN(300))
}

func randBytes(r *rand.Rand, n int) []byte {
	if n == 0 || r.IntN(10) == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

var runeRanges = [][2]rune{{' ', '~'}, {0xA0, 0x17F}, {0x400, 0x4FF}, {0x4E00, 0x9FFF}, {0x1F300, 0x1FAFF}, {0, 0x1F}}

// randString mixes ASCII, Latin, Cyrillic, CJK, emoji and control characters.
func randString(r *rand.Rand, max int) string {
	var sb strings.Builder
	for range r.IntN(max + 1) {
		rr := runeRanges[r.IntN(len(runeRanges))]
		sb.WriteRune(rr[0] + rune(r.IntN(int(rr[1]-rr[0]+1))))
	}
	return sb.String()
}

// decoded is f as it reads back: times at microsecond precision, zero token expiry
// as none, empty and nil collections alike.
func decoded(f Frame) Frame {
	f.TS = time.UnixMicro(f.TS.Unix()*1e6 + int64(f.TS.Nanosecond()/1e3)).UTC()
	if f.Start != nil {
		s := *f.Start
		if !s.TokenExpiry.IsZero() {
			s.TokenExpiry = time.UnixMicro(s.TokenExpiry.Unix()*1e6 + int64(s.TokenExpiry.Nanosecond()/1e3)).UTC()
		}
		f.Start = &s
	}
	return normalized(f)
}

func normalized(f Frame) Frame {
	for _, b := range []*[]byte{&f.Payload, &f.PayloadSalt, &f.PayloadDigest, &f.PrevHash, &f.Hash} {
		*b = nilIfEmpty(*b)
	}
	if len(f.Masks) == 0 {
		f.Masks = nil
	}
	if f.Start != nil {
		s := *f.Start
		if len(s.Groups) == 0 {
			s.Groups = nil
		}
		if len(s.Params) == 0 {
			s.Params = nil
		}
		f.Start = &s
	}
	if f.End != nil {
		e := *f.End
		e.FinalHash, e.Signature, e.GatewayKey = nilIfEmpty(e.FinalHash), nilIfEmpty(e.Signature), nilIfEmpty(e.GatewayKey)
		f.End = &e
	}
	if f.ProcessorSig != nil {
		p := *f.ProcessorSig
		p.Key, p.Signature = nilIfEmpty(p.Key), nilIfEmpty(p.Signature)
		f.ProcessorSig = &p
	}
	return f
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// benchFrame is a sealed data frame as an edge records it.
func benchFrame(b *testing.B, payload int) Frame {
	f := Frame{SessionID: uuid.NewString(), Seq: 1234, TS: time.Now().UTC(), Direction: Server,
		Protocol: Postgres, Kind: "DataRow", Payload: bytes.Repeat([]byte{'x'}, payload), Final: true,
		GatewayID: "gw-eu-1", Masks: map[string]int64{"email": 1}}
	if err := Seal(&f, ZeroHash); err != nil {
		b.Fatal(err)
	}
	return f
}

func BenchmarkFrameEncode(b *testing.B) {
	for _, size := range []int{128, 64 << 10} {
		f := benchFrame(b, size)
		b.Run(fmt.Sprintf("payload=%d/goavro", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FrameCodec().current.SingleFromNative(nil, frameToNative(&f)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("payload=%d/direct", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FrameCodec().Encode(&f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
