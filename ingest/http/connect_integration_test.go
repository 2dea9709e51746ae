package httpproxy_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// WebSockets over HTTP/2 are not relayed: the gateway does not advertise
// extended CONNECT, so an HTTP/2 client is told before sending anything, and
// CONNECT in any form is answered with what to do instead.
func TestConnectIsRefusedClearly(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	tok := g.token("connect-agent", "dev")

	if code := extendedConnect(t, g, tok); code != http2.ErrCodeProtocol {
		t.Fatalf("extended CONNECT over h2 answered %v, want a PROTOCOL_ERROR reset", code)
	}

	for _, h2 := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodConnect, g.base+"/api/ws", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := g.client(h2).Do(req)
		if err != nil {
			t.Fatalf("CONNECT (h2 %v): %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(b), "CONNECT tunnels are not supported") {
			t.Fatalf("CONNECT (h2 %v): %d %q", h2, resp.StatusCode, b)
		}
	}
	if len(a.requests()) != 0 {
		t.Fatal("CONNECT reached the target")
	}
}

// extendedConnect speaks HTTP/2 frames as a WebSocket client following
// RFC 8441 would: it reads the server's SETTINGS (which must not enable
// CONNECT), sends a CONNECT with :protocol anyway, and returns how the
// stream was reset.
func extendedConnect(t *testing.T, g *itGateway, tok string) http2.ErrCode {
	t.Helper()
	u, _ := url.Parse(g.base)
	c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: g.certPool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
		{":path", "/api/ws"}, {":authority", u.Host}, {"authorization", "Bearer " + tok}, {"sec-websocket-version", "13"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	sent := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the gateway's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingEnableConnectProtocol); ok && v == 1 {
				t.Fatal("the gateway advertises extended CONNECT, which it does not relay")
			}
			fr.WriteSettingsAck()
			if !sent {
				sent = true
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.RSTStreamFrame:
			return f.ErrCode
		case *http2.HeadersFrame:
			t.Fatalf("extended CONNECT got a response head instead of a reset")
		case *http2.GoAwayFrame:
			return f.ErrCode
		}
	}
}
