package schemas

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// goavroDecode is how Decode read a current-schema frame before frames were
// decoded directly.
func goavroDecode(b []byte) (Frame, error) { return goavroOf(FrameCodec(), b) }

// goavroOf decodes b through goavro's generic path, whatever direct decoder c has.
func goavroOf[T any](c *Codec[T], b []byte) (T, error) {
	w, body, err := c.writerOf(b)
	if err != nil {
		var zero T
		return zero, err
	}
	return c.decodeNative(w, body)
}

func TestFrameDecodeMatchesGoavro(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 2))
	n := 400
	if testing.Short() {
		n = 150
	}
	for i := range n {
		f := randomFrame(r)
		b, err := FrameCodec().Encode(&f)
		if err != nil {
			t.Fatalf("seed %d frame %d: encode: %v", seed, i, err)
		}
		got, err := FrameCodec().Decode(b)
		if err != nil {
			t.Fatalf("seed %d frame %d: decode: %v", seed, i, err)
		}
		want, err := goavroDecode(b)
		if err != nil {
			t.Fatalf("seed %d frame %d: goavro: %v", seed, i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d frame %d: decoders differ\n direct %+v\n goavro %+v", seed, i, got, want)
		}
	}
}

func TestFrameDecodeLongBlocks(t *testing.T) {
	f := sampleFrame(t)
	f.Start.Groups = make([]string, maxBlockCount+3)
	f.Masks = map[string]int64{"email": 2, "card": 1}
	b, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FrameCodec().Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Start.Groups) != maxBlockCount+3 || !reflect.DeepEqual(got.Masks, f.Masks) {
		t.Fatalf("groups %d masks %v", len(got.Start.Groups), got.Masks)
	}
}

// Every cut of a valid value, and every byte changed, is refused or decoded
// as goavro decodes it; a length or count larger than the value is refused
// without allocating it.
func TestFrameDecodeDamagedValues(t *testing.T) {
	f := sampleFrame(t)
	good, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	for n := 10; n < len(good); n++ {
		if _, err := FrameCodec().Decode(good[:n]); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decoded", n, len(good))
		}
	}
	if _, err := FrameCodec().Decode(append(bytes.Clone(good), 0)); err == nil {
		t.Fatal("a trailing byte was accepted")
	}
	for i := 10; i < len(good); i++ {
		for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] = v
			checkAgainstGoavro(t, b)
		}
	}
	// session_id's length prefix claiming 2^62 bytes.
	huge := append(bytes.Clone(good[:10]), 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := FrameCodec().Decode(huge); err == nil {
		t.Fatal("a length beyond the value was accepted")
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("%d bytes allocated to refuse a length", n)
	}
}

// checkAgainstGoavro fails when the direct decoder accepts b and goavro does
// not or decodes it differently, or when goavro accepts a value the current
// writer could have written (it encodes back to the same bytes) and the
// direct decoder refuses it.
func checkAgainstGoavro(t *testing.T, b []byte) {
	t.Helper()
	checkDirectDecoder(t, FrameCodec(), b)
}

// checkDirectDecoder is checkAgainstGoavro for any codec with a direct decoder.
func checkDirectDecoder[T any](t *testing.T, c *Codec[T], b []byte) {
	t.Helper()
	got, err := c.Decode(b)
	want, werr := goavroOf(c, b)
	if err == nil {
		if werr != nil {
			t.Fatalf("direct decoder accepted %x, goavro refused it: %v", b, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders differ on %x\n direct %+v\n goavro %+v", b, got, want)
		}
		return
	}
	if werr != nil {
		return
	}
	if again, eerr := c.Encode(&want); eerr == nil && bytes.Equal(again, b) {
		t.Fatalf("direct decoder refused %x (%v), which goavro decodes and which encodes back to itself", b, err)
	}
}

func FuzzFrameDecodeMatchesGoavro(f *testing.F) {
	fr := sampleFrame(f)
	good, _ := FrameCodec().Encode(&fr)
	f.Add(good)
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		fr := randomFrame(r)
		b, _ := FrameCodec().Encode(&fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 10 || !bytes.Equal(b[:10], good[:10]) {
			b = append(bytes.Clone(good[:10]), b...) // the body is what is fuzzed
		}
		checkAgainstGoavro(t, b)
	})
}

func BenchmarkFrameDecode(b *testing.B) {
	f := sampleFrame(b)
	f.Start, f.End = nil, nil
	f.Payload = bytes.Repeat([]byte("SELECT 1;"), 30)
	v, err := FrameCodec().Encode(&f)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		decode func([]byte) (Frame, error)
	}{{"direct", FrameCodec().Decode}, {"goavro", goavroDecode}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				if _, err := tc.decode(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A current-schema frame takes the direct path: a handful of allocations (the
// strings and the masks map), not goavro's boxed values.
func TestFrameDecodeIsDirect(t *testing.T) {
	f := sampleFrame(t)
	f.Start, f.End = nil, nil
	b, err := FrameCodec().Encode(&f)
	if err != nil {
		t.Fatal(err)
	}
	direct := testing.AllocsPerRun(50, func() { _, _ = FrameCodec().Decode(b) })
	generic := testing.AllocsPerRun(50, func() { _, _ = goavroDecode(b) })
	if direct*3 > generic {
		t.Fatalf("Decode made %v allocations, goavro %v: the direct decoder is not used", direct, generic)
	}
}
