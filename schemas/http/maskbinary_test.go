package http_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// A body that is not textual (a file upload, an archive) and a WebSocket
// binary message go through the detectors keeping their length; a compressed
// binary body is stored as sent.
func TestMaskScansBinaryContent(t *testing.T) {
	secret := []byte("sk_live_123")
	rules := hs.MaskRules{
		Text:  func(b []byte) []byte { return bytes.ReplaceAll(b, secret, []byte("[masked:api_key]")) },
		Bytes: func(b []byte) []byte { return bytes.ReplaceAll(b, secret, bytes.Repeat([]byte("*"), len(secret))) },
	}
	file := append(append([]byte{0, 1, 0xff, 0xfe}, "\nSTRIPE_KEY="...), append(secret, 0xc3, 0xff, '\n')...)
	head := func(ct, enc string, n int) *schemas.Frame {
		h := []hs.Field{{Name: "Content-Type", Value: ct}, {Name: "Content-Length", Value: strconv.Itoa(n)}}
		if enc != "" {
			h = append(h, hs.Field{Name: "Content-Encoding", Value: enc})
		}
		return &schemas.Frame{Kind: hs.KindRequest, Direction: schemas.Client, Channel: 1, Final: true,
			Payload: hs.EncodeHead(&hs.Head{Method: "PUT", Proto: "HTTP/1.1", Headers: h})}
	}
	for _, c := range []struct {
		name, ct, enc string
		masked        bool
	}{
		{"octet-stream", "application/octet-stream", "", true},
		{"multipart upload", "multipart/form-data; boundary=x", "", true},
		{"image", "image/png", "identity", true},
		{"gzip archive, not decoded", "application/gzip", "gzip", false},
	} {
		var st hs.MaskState
		st.MaskFrame(head(c.ct, c.enc, len(file)), rules)
		out := st.MaskFrame(bodyFrame(append([]byte(nil), file...)), rules)
		if got := !bytes.Contains(out, secret); got != c.masked {
			t.Errorf("%s: masked %v, want %v: %q", c.name, got, c.masked, out)
		}
		if len(out) != len(file) {
			t.Errorf("%s: length %d → %d", c.name, len(file), len(out))
		}
	}

	var st hs.MaskState
	ws := &schemas.Frame{Kind: hs.KindWSBinary, Direction: schemas.Server, Channel: 1, Final: true, Payload: append([]byte(nil), file...)}
	if out := st.MaskFrame(ws, rules); bytes.Contains(out, secret) || len(out) != len(file) {
		t.Errorf("WebSocket binary message: %q", out)
	}
}
