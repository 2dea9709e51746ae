package mask

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

func httpFrame(kind string, dir schemas.Direction, ch int64, p []byte) *schemas.Frame {
	return &schemas.Frame{Protocol: schemas.HTTP, Kind: kind, Direction: dir, Channel: ch, Payload: p, Final: true}
}

// Heads lose credentials and cookies, whole JSON bodies their secret fields,
// streamed parts their detector hits; the chain's digest is untouched.
func TestHTTPFramesMasked(t *testing.T) {
	m, err := New(Config{Defaults: Rules{HTTPHeaders: []string{"x-internal"}, JSONFields: []string{"pin"}}})
	if err != nil {
		t.Fatal(err)
	}
	conv := hs.Protocol{}.NewConversation()
	body := []byte(`{"user":"bob","password":"hunter2","pin":1234,"mail":"carol@example.com"}`)
	head := hs.EncodeHead(&hs.Head{Method: "POST", Target: "/login?api_key=abc&x=1", Path: "/api/login?api_key=abc&x=1", Proto: "HTTP/1.1",
		Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: strconv.Itoa(len(body))},
			{Name: "Cookie", Value: "sid=1"}, {Name: "X-Internal", Value: "s3"}, {Name: "Accept", Value: "*/*"}}})
	f := httpFrame(hs.KindRequest, schemas.Client, 1, head)
	if c := m.Frame(f, "api", conv); c[hs.MaskHeader] != 2 || c[hs.MaskField] != 2 {
		t.Fatalf("head counts %v", c)
	}
	h, err := hs.DecodeHead(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if hs.Get(h.Headers, "Cookie") != "[masked:http_header]" || hs.Get(h.Headers, "X-Internal") != "[masked:http_header]" ||
		hs.Get(h.Headers, "Accept") != "*/*" || !strings.Contains(h.Target, "api_key=%5Bmasked%3Ajson_field%5D") {
		t.Fatalf("masked head %+v", h)
	}
	b := httpFrame(hs.KindRequestBody, schemas.Client, 1, append([]byte(nil), body...))
	m.Frame(b, "api", conv)
	want := `{"user":"bob","password":"[masked:json_field]","pin":"[masked:json_field]","mail":"[masked:email]"}`
	if string(b.Payload) != want || b.PayloadSalt != nil {
		t.Fatalf("masked body %s", b.Payload)
	}
	// A part of a streamed body (no Content-Length) gets the detectors only.
	sse := hs.EncodeHead(&hs.Head{Status: 200, Proto: "HTTP/1.1", Headers: []hs.Field{{Name: "Content-Type", Value: "text/event-stream"}}})
	m.Frame(httpFrame(hs.KindResponse, schemas.Server, 2, sse), "api", conv)
	part := httpFrame(hs.KindResponseBody, schemas.Server, 2, []byte("data: {\"mail\":\"dave@example.com\",\"password\":\"p\"}\n\n"))
	m.Frame(part, "api", conv)
	if bytes.Contains(part.Payload, []byte("dave@example.com")) {
		t.Fatalf("streamed part %s", part.Payload)
	}
}

// FuzzMaskHTTPFrames: any payload under any HTTP kind masks without panic, and
// a secret planted in a whole JSON body is masked.
func FuzzMaskHTTPFrames(f *testing.F) {
	m := fuzzSetup(f)
	f.Add([]byte(`{"method":"GET","target":"/","proto":"HTTP/1.1","headers":[{"name":"Cookie","value":"a"}]}`), uint8(0))
	f.Add([]byte(`{"bytes":3,"trailers":[{"name":"Authorization","value":"x"}]}`), uint8(2))
	f.Add([]byte(`{"code":1000,"reason":"bye"}`), uint8(8))
	f.Fuzz(func(t *testing.T, p []byte, sel uint8) {
		kind := hs.Kinds[int(sel)%len(hs.Kinds)]
		conv := hs.Protocol{}.NewConversation()
		fr := httpFrame(kind, schemas.Client, int64(sel>>4), append([]byte(nil), p...))
		m.Frame(fr, "api", conv)
		if bytes.Contains(p, []byte(plantedSecret)) {
			return // the check below is about the planted field only
		}
		body := append([]byte(`{"password":"`+plantedSecret+`","x":`), strconv.Quote(string(p))...)
		body = append(body, '}')
		head := hs.EncodeHead(&hs.Head{Method: "POST", Proto: "HTTP/1.1", Headers: []hs.Field{
			{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: strconv.Itoa(len(body))}}})
		m.Frame(httpFrame(hs.KindRequest, schemas.Client, 9, head), "api", conv)
		bf := httpFrame(hs.KindRequestBody, schemas.Client, 9, body)
		m.Frame(bf, "api", conv)
		if bytes.Contains(bf.Payload, []byte(plantedSecret)) {
			t.Fatalf("planted secret not masked: %s", bf.Payload)
		}
	})
}
