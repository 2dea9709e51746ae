package http_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

func compress(t testing.TB, enc string, b []byte) []byte {
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		z, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func secretRules(counts map[string]int64) hs.MaskRules {
	return hs.MaskRules{
		Field: func(n string) bool { return n == "password" },
		Text:  func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("sk_live_123"), []byte("[masked:api_key]")) },
		Count: func(typ string, n int64) { counts[typ] += n },
	}
}

func bodyHead(enc string, length int) *schemas.Frame {
	h := []hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Encoding", Value: enc}}
	if length >= 0 {
		h = append(h, hs.Field{Name: "Content-Length", Value: strconv.Itoa(length)})
	}
	return &schemas.Frame{Kind: hs.KindRequest, Direction: schemas.Client, Channel: 1, Final: true,
		Payload: hs.EncodeHead(&hs.Head{Method: "POST", Proto: "HTTP/1.1", Headers: h})}
}

func bodyFrame(p []byte) *schemas.Frame {
	return &schemas.Frame{Kind: hs.KindRequestBody, Direction: schemas.Client, Channel: 1, Final: true, Payload: p}
}

// A whole compressed JSON body is masked by field name on its decoded
// content, stored decoded, and its head says it was decoded.
func TestMaskDecodesWholeCompressedBodies(t *testing.T) {
	plain := []byte(`{"user":"al","password":"hunter2","note":"sk_live_123"}`)
	for _, enc := range []string{"gzip", "deflate", "br", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			z := compress(t, enc, plain)
			counts := map[string]int64{}
			st := &hs.MaskState{}
			h, err := hs.DecodeHead(st.MaskFrame(bodyHead(enc, len(z)), secretRules(counts)))
			if err != nil || hs.Get(h.Headers, "Content-Encoding") != "" || hs.Get(h.Headers, hs.DecodedHeader) != enc {
				t.Fatalf("head not marked decoded: %+v %v", h, err)
			}
			got := string(st.MaskFrame(bodyFrame(z), secretRules(counts)))
			want := `{"user":"al","password":"[masked:json_field]","note":"[masked:api_key]"}`
			if got != want {
				t.Fatalf("stored body %q, want %q", got, want)
			}
			if counts[hs.MaskDecoded] != 2 || counts[hs.MaskDecodeCut] != 0 || counts[hs.MaskDecodeError] != 0 {
				t.Fatalf("counts %v", counts)
			}
		})
	}
}

// A streamed gzip body is decoded across its frames: a secret split over
// two compressed frames is still found, and the stored frames concatenate
// to the decoded body.
func TestMaskDecodesStreamedGzipAcrossFrames(t *testing.T) {
	plain := []byte(strings.Repeat("event: tick\ndata: 1\n\n", 500) + "data: sk_live_123\n\n" + strings.Repeat("data: 2\n\n", 500))
	z := compress(t, "gzip", plain)
	counts := map[string]int64{}
	st := &hs.MaskState{}
	st.MaskFrame(bodyHead("gzip", -1), secretRules(counts))
	var stored []byte
	for i := 0; i < len(z); i += 7 {
		stored = append(stored, st.MaskFrame(bodyFrame(z[i:min(i+7, len(z))]), secretRules(counts))...)
	}
	want := strings.Replace(string(plain), "sk_live_123", "[masked:api_key]", 1)
	if string(stored) != want {
		t.Fatalf("stored %d bytes, want %d; secret left: %v", len(stored), len(want), bytes.Contains(stored, []byte("sk_live_123")))
	}
}

// A zip bomb expands only to MaxDecodedBody, and the cut is counted.
func TestMaskBoundsDecompression(t *testing.T) {
	z := compress(t, "gzip", make([]byte, 3*hs.MaxDecodedBody))
	counts := map[string]int64{}
	st := &hs.MaskState{}
	st.MaskFrame(bodyHead("gzip", len(z)), secretRules(counts))
	out := st.MaskFrame(bodyFrame(z), secretRules(counts))
	if len(out) != hs.MaxDecodedBody || counts[hs.MaskDecodeCut] != 1 {
		t.Fatalf("stored %d bytes, counts %v", len(out), counts)
	}
}

// A body that is not what its encoding says is stored as far as it
// decodes, and flagged.
func TestMaskFlagsUndecodableBodies(t *testing.T) {
	z := compress(t, "gzip", []byte(`{"password":"hunter2"}`))
	bad := z[:len(z)-6]
	counts := map[string]int64{}
	st := &hs.MaskState{}
	st.MaskFrame(bodyHead("gzip", len(bad)), secretRules(counts))
	out := st.MaskFrame(bodyFrame(bad), secretRules(counts))
	if bytes.Contains(out, []byte("hunter2")) || counts[hs.MaskDecodeError] != 1 {
		t.Fatalf("stored %q, counts %v", out, counts)
	}
}

// FuzzMaskCompressed: any bytes under any encoding mask without panicking,
// within the bound, and never store a configured field's value.
func FuzzMaskCompressed(f *testing.F) {
	f.Add("gzip", compress(f, "gzip", []byte(`{"password":"hunter2"}`)), true)
	f.Add("br", compress(f, "br", []byte(`{"password":"hunter2"}`)), false)
	f.Add("zstd", compress(f, "zstd", []byte(`a`)), false)
	f.Add("deflate", []byte{0x78, 0x9c, 0xff}, true)
	f.Fuzz(func(t *testing.T, enc string, p []byte, whole bool) {
		n := -1
		if whole {
			n = len(p)
		}
		st := &hs.MaskState{}
		counts := map[string]int64{}
		st.MaskFrame(bodyHead(enc, n), secretRules(counts))
		for i := 0; i < 3; i++ {
			if out := st.MaskFrame(bodyFrame(p), secretRules(counts)); len(out) > hs.MaxDecodedBody {
				t.Fatalf("stored %d bytes", len(out))
			}
		}
	})
}
