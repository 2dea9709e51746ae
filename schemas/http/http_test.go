package http_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/http/hartest"
)

type sessionBuilder struct {
	fs  []schemas.Frame
	now time.Time
}

func (b *sessionBuilder) add(kind string, dir schemas.Direction, ch int64, p []byte) {
	b.now = b.now.Add(time.Millisecond)
	b.fs = append(b.fs, schemas.Frame{Seq: int64(len(b.fs)), TS: b.now, Protocol: schemas.HTTP, Kind: kind, Direction: dir,
		Channel: ch, Payload: p, Final: true})
}

// sample is a session with a JSON exchange (body in two frames), an exchange
// cut short, and a WebSocket.
func sample() []schemas.Frame {
	b := &sessionBuilder{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b.add(hs.KindRequest, schemas.Client, 1, hs.EncodeHead(&hs.Head{Method: "POST", Target: "/v1/items?a=1&b=x%20y", Host: "api.internal",
		Path: "/api/v1/items?a=1&b=x%20y", Scheme: "https", Proto: "HTTP/2.0",
		Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Cookie", Value: "a=1; b=2"}}}))
	b.add(hs.KindRequestBody, schemas.Client, 1, []byte(`{"n":`))
	b.add(hs.KindRequestBody, schemas.Client, 1, []byte(`1}`))
	b.add(hs.KindRequestEnd, schemas.Client, 1, hs.EncodeEnd(&hs.End{Bytes: 7}))
	b.add(hs.KindRequest, schemas.Client, 2, hs.EncodeHead(&hs.Head{Method: "GET", Target: "/ws", Host: "api.internal", Path: "/api/ws",
		Scheme: "https", Proto: "HTTP/1.1", Headers: []hs.Field{{Name: "Upgrade", Value: "websocket"}}}))
	b.add(hs.KindRequestEnd, schemas.Client, 2, hs.EncodeEnd(&hs.End{}))
	b.add(hs.KindResponse, schemas.Server, 1, hs.EncodeHead(&hs.Head{Status: 201, Proto: "HTTP/2.0",
		Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Set-Cookie", Value: "sid=x; HttpOnly"}}}))
	b.add(hs.KindResponse, schemas.Server, 2, hs.EncodeHead(&hs.Head{Status: 101, Proto: "HTTP/1.1"}))
	b.add(hs.KindWSText, schemas.Client, 2, []byte("hi"))
	b.add(hs.KindResponseBody, schemas.Server, 1, []byte(`{"id":7}`))
	b.add(hs.KindResponseEnd, schemas.Server, 1, hs.EncodeEnd(&hs.End{Bytes: 8, Trailers: []hs.Field{{Name: "X-Sum", Value: "1"}}}))
	b.add(hs.KindWSBinary, schemas.Server, 2, []byte{0, 0xff})
	b.add(hs.KindWSClose, schemas.Client, 2, hs.EncodeClose(&hs.Close{Code: 1000, Reason: "done"}))
	b.add(hs.KindWSClose, schemas.Server, 2, hs.EncodeClose(&hs.Close{Code: 1000, Reason: "done"}))
	b.add(hs.KindResponseEnd, schemas.Server, 2, hs.EncodeEnd(&hs.End{Bytes: 2}))
	b.add(hs.KindRequest, schemas.Client, 3, hs.EncodeHead(&hs.Head{Method: "GET", Target: "/slow", Host: "api.internal", Path: "/api/slow", Proto: "HTTP/1.1"}))
	return b.fs
}

func TestExchangesPairRequestsWithResponses(t *testing.T) {
	xs, problems := hs.Exchanges(sample(), 0)
	if len(problems) > 0 || len(xs) != 3 {
		t.Fatalf("%d exchanges, problems %v", len(xs), problems)
	}
	x := xs[0]
	if string(x.RequestBody.Data) != `{"n":1}` || string(x.ResponseBody.Data) != `{"id":7}` || x.Response.Status != 201 || !x.Complete() {
		t.Fatalf("exchange 1: %+v", x)
	}
	if x.FirstByte.Sub(x.Started) != 6*time.Millisecond {
		t.Fatalf("first byte after %v", x.FirstByte.Sub(x.Started))
	}
	c := x.Command()
	if c.Text != "POST /api/v1/items?a=1&b=x%20y" || *c.ExitStatus != 201 || c.Status != hs.StatusOK || c.Params[0] != "request_bytes=7" {
		t.Fatalf("command %+v", c)
	}
	ws := xs[1]
	if !ws.WebSocket() || len(ws.Messages) != 4 || ws.Command().Rows != 2 {
		t.Fatalf("websocket %+v", ws.Messages)
	}
	if xs[2].Complete() || xs[2].Command().Status != hs.StatusIncomplete {
		t.Fatal("cut exchange complete")
	}
}

func TestHARValidatesAndHoldsExactBodies(t *testing.T) {
	xs, _ := hs.Exchanges(sample(), 0)
	var buf bytes.Buffer
	if err := hs.WriteHAR(&buf, xs, "test", "session s"); err != nil {
		t.Fatal(err)
	}
	if err := hartest.Validate(buf.Bytes()); err != nil {
		t.Fatalf("HAR invalid: %v\n%s", err, buf.String())
	}
	var h hs.HAR
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	e := h.Log.Entries[0]
	if e.Request.PostData.Text != `{"n":1}` || e.Response.Content.Text != `{"id":7}` || e.Request.URL != "https://api.internal/v1/items?a=1&b=x%20y" {
		t.Fatalf("entry %+v", e)
	}
	if len(e.Request.QueryString) != 2 || e.Request.QueryString[1].Value != "x y" || len(e.Request.Cookies) != 2 || e.Response.Cookies[0].Name != "sid" {
		t.Fatalf("query %v cookies %v", e.Request.QueryString, e.Request.Cookies)
	}
	ws := h.Log.Entries[1].WebSocketMessages
	if len(ws) != 4 || ws[0].Type != "send" || ws[0].Opcode != 1 || ws[1].Opcode != 2 || ws[1].Data != "AP8=" {
		t.Fatalf("websocket messages %+v", ws)
	}
	if h.Log.Entries[2].Response.Status != 0 {
		t.Fatal("cut exchange has a status")
	}
	// A document that breaks the schema is refused (the check can fail).
	if err := hartest.Validate([]byte(`{"log":{"version":"1.2","entries":[{}]}}`)); err == nil {
		t.Fatal("invalid HAR accepted")
	}
}

func TestTranscriptEscapesControlBytes(t *testing.T) {
	b := &sessionBuilder{}
	b.add(hs.KindRequest, schemas.Client, 1, hs.EncodeHead(&hs.Head{Method: "GET", Target: "/\x1b[2J", Proto: "HTTP/1.1",
		Headers: []hs.Field{{Name: "X", Value: "a\r\nInjected: 1"}}}))
	b.add(hs.KindRequestEnd, schemas.Client, 1, hs.EncodeEnd(&hs.End{}))
	b.add(hs.KindResponse, schemas.Server, 1, hs.EncodeHead(&hs.Head{Status: 200, Proto: "HTTP/1.1"}))
	b.add(hs.KindResponseBody, schemas.Server, 1, []byte("line1\n\x1b]0;title\x07line2\n"))
	b.add(hs.KindResponseEnd, schemas.Server, 1, hs.EncodeEnd(&hs.End{Bytes: 20}))
	xs, _ := hs.Exchanges(b.fs, 0)
	var out strings.Builder
	hs.WriteText(&out, xs)
	s := out.String()
	if strings.ContainsAny(s, "\x1b\x07\r") || strings.Contains(s, "\nInjected") {
		t.Fatalf("control bytes in transcript:\n%q", s)
	}
	for _, want := range []string{"> GET /\\x1b[2J HTTP/1.1", "< HTTP/1.1 200 OK", "line1\n\\x1b]0;title\\x07line2"} {
		if !strings.Contains(s, want) {
			t.Fatalf("transcript lacks %q:\n%s", want, s)
		}
	}
}

func TestMaskRulesAlwaysMaskCredentials(t *testing.T) {
	st := &hs.MaskState{}
	head := hs.EncodeHead(&hs.Head{Method: "GET", Proto: "HTTP/1.1", Headers: []hs.Field{
		{Name: "authorization", Value: "Basic dXNlcjpwdw=="}, {Name: "Proxy-Authorization", Value: "x"}, {Name: "Set-Cookie", Value: "a=b"}}})
	f := &schemas.Frame{Kind: hs.KindRequest, Payload: head, Final: true}
	h, _ := hs.DecodeHead(st.MaskFrame(f, hs.MaskRules{}))
	for _, fl := range h.Headers {
		if !strings.Contains(fl.Value, "[masked:http_header]") {
			t.Fatalf("%s not masked: %q", fl.Name, fl.Value)
		}
	}
	if h.Headers[0].Value != "Basic [masked:http_header]" {
		t.Fatalf("scheme lost: %q", h.Headers[0].Value)
	}
}

// FuzzExchanges: any frames of HTTP kinds assemble, export and print without
// panicking, and the HAR stays valid JSON.
func FuzzExchanges(f *testing.F) {
	for _, fr := range sample() {
		f.Add(fr.Kind, fr.Payload, uint8(fr.Channel), true)
	}
	f.Fuzz(func(t *testing.T, kind string, p []byte, ch uint8, final bool) {
		fs := sample()
		fs = append(fs, schemas.Frame{Seq: int64(len(fs)), Protocol: schemas.HTTP, Kind: kind, Channel: int64(ch % 4), Payload: p, Final: final},
			schemas.Frame{Seq: int64(len(fs) + 1), Protocol: schemas.HTTP, Kind: hs.Kinds[int(ch)%len(hs.Kinds)], Channel: int64(ch % 3), Payload: p, Final: true, Fragment: int32(ch % 2)})
		xs, _ := hs.Exchanges(fs, 16)
		var buf bytes.Buffer
		if err := hs.WriteHAR(&buf, xs, "f", ""); err != nil || !json.Valid(buf.Bytes()) {
			t.Fatalf("HAR: %v", err)
		}
		buf.Reset()
		if err := hs.WriteText(&buf, xs); err != nil || bytes.ContainsAny(buf.Bytes(), "\x1b\r\x07") {
			t.Fatalf("text: %v %q", err, buf.Bytes())
		}
		for _, x := range xs {
			_ = x.Command()
		}
		st := &hs.MaskState{}
		for i := range fs {
			st.MaskFrame(&fs[i], hs.MaskRules{Field: func(string) bool { return true }})
		}
	})
}
