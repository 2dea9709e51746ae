package http_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	hs "github.com/tapline/tapline/schemas/http"
)

// marshal is what encoding/json writes, without HTML escaping.
func marshal(t *testing.T, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Heads and ends are written byte for byte as encoding/json writes them.
func TestHeadEncodingIsEncodingJSONs(t *testing.T) {
	for _, h := range []*hs.Head{
		{Method: "GET", Target: "/a?b=1", Host: "api", Path: "/x/a?b=1", Scheme: "https", Proto: "HTTP/2.0",
			Headers: []hs.Field{{Name: "Accept", Value: "*/*"}, {Name: "X-Quote", Value: `say "hi" \ bye`}}},
		{Status: 502, Proto: "HTTP/1.1", Headers: []hs.Field{}, Gateway: "upstream_unreachable"},
		{Proto: "HTTP/1.1"},
		{Method: "POST", Proto: "HTTP/1.1", Headers: []hs.Field{{Name: "X-Odd", Value: "tab\tnl\ncr\r\x00\x1f\x7f \b\f <&> é \u2028 \xff"}}},
	} {
		if got, want := hs.EncodeHead(h), marshal(t, h); !bytes.Equal(got, want) {
			t.Errorf("head:\n got %s\nwant %s", got, want)
		}
	}
	for _, e := range []*hs.End{{}, {Bytes: 7, Trailers: []hs.Field{{Name: "X-Sum", Value: "1"}}}, {Bytes: 1, Trailers: []hs.Field{}, Error: "agent went away"}} {
		if got, want := hs.EncodeEnd(e), marshal(t, e); !bytes.Equal(got, want) {
			t.Errorf("end:\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzHeadEncoding: any head decodes back as encoding/json's own encoding of
// it does (invalid UTF-8 becomes U+FFFD either way).
func FuzzHeadEncoding(f *testing.F) {
	f.Add("GET", "/a", "h", 200, "X-A", "v\x00\"\\\xff\u2028<>&", "err")
	f.Fuzz(func(t *testing.T, method, target, proto string, status int, name, value, gateway string) {
		h := &hs.Head{Method: method, Target: target, Proto: proto, Status: status, Headers: []hs.Field{{Name: name, Value: value}}, Gateway: gateway}
		e := &hs.End{Bytes: int64(status), Trailers: h.Headers, Error: gateway}
		for _, c := range []struct {
			got, want []byte
			v         func() any
		}{
			{hs.EncodeHead(h), marshal(t, h), func() any { return new(hs.Head) }},
			{hs.EncodeEnd(e), marshal(t, e), func() any { return new(hs.End) }},
		} {
			got, want := c.v(), c.v()
			if err := json.Unmarshal(c.got, got); err != nil {
				t.Fatalf("%s: %v", c.got, err)
			}
			if err := json.Unmarshal(c.want, want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
		}
	})
}
