//go:build chdb

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/http/hartest"
)

// httpApp is the HTTP target of the pipeline: a JSON API, an SSE stream and a
// WebSocket echo over TLS.
type httpApp struct {
	*httptest.Server
	addr, caFile string
}

func startHTTPApp(dir string) (*httpApp, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/login", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"access_token":"tok-%d","auth":%q}`, len(b), r.Header.Get("Authorization"))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i)
			rc.Flush()
		}
	})
	mux.HandleFunc("GET /v1/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, d, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, append([]byte("echo:"), d...)); err != nil {
				return
			}
		}
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	ca := filepath.Join(dir, "web-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		srv.Close()
		return nil, err
	}
	return &httpApp{Server: srv, addr: srv.Listener.Addr().String(), caFile: ca}, nil
}

// httpClient trusts the gateway's certificate.
func (h *harness) httpClient(t *testing.T) *http.Client {
	t.Helper()
	b, err := os.ReadFile(h.gwCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// One connection with a JSON exchange and an SSE stream, another with a
// WebSocket: through processors and the store, the commands, the HAR export
// (valid HAR 1.2, exact bodies, secrets masked) and the verification hold.
func TestHTTPSessionsThroughThePipeline(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "hal-" + randHex(3)
	token := h.token(t, sub, httpGroup)
	auditor := h.token(t, "aud-"+randHex(3), auditors)
	base := "https://" + h.httpAddr + "/" + httpTarget
	cl := h.httpClient(t)

	login := `{"user":"hal","password":"open-the-pod-bay-doors"}`
	req, _ := http.NewRequest("POST", base+"/v1/login", strings.NewReader(login))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gotLogin, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantLogin := fmt.Sprintf(`{"ok":true,"access_token":"tok-%d","auth":"Bearer web-target-secret"}`, len(login))
	if string(gotLogin) != wantLogin {
		t.Fatalf("login answer %q", gotLogin)
	}
	req, _ = http.NewRequest("GET", base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(events) != "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"n\":3}\n\n" {
		t.Fatalf("events %q", events)
	}
	cl.Transport.(*http.Transport).CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wsHTTP := h.httpClient(t)
	wsHTTP.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	wsHTTP.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	c, _, err := websocket.Dial(ctx, "wss://"+h.httpAddr+"/"+httpTarget+"/v1/ws", &websocket.DialOptions{
		HTTPClient: wsHTTP, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two"} {
		c.Write(ctx, websocket.MessageText, []byte(m))
		if _, d, err := c.Read(ctx); err != nil || string(d) != "echo:"+m {
			t.Fatalf("ws: %q %v", d, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "bye")

	sessions := h.waitSessions(t, sub, 2)
	var har hs.HAR
	var kinds []string
	for _, s := range sessions {
		if s.Protocol != "HTTP" {
			t.Fatalf("protocol %s", s.Protocol)
		}
		for _, c := range h.commands(t, auditor, s.SessionID) {
			kinds = append(kinds, c.Kind+" "+c.Text+" "+c.Status)
		}
		doc := h.replay(t, auditor, s.SessionID, "har")
		if err := hartest.Validate([]byte(doc)); err != nil {
			t.Fatalf("HAR of %s invalid: %v\n%s", s.SessionID, err, doc)
		}
		var one hs.HAR
		if err := json.Unmarshal([]byte(doc), &one); err != nil {
			t.Fatal(err)
		}
		har.Log.Entries = append(har.Log.Entries, one.Log.Entries...)
		if rep := h.verify(t, auditor, s.SessionID); !rep.OK {
			t.Fatalf("verify %s: %+v", s.SessionID, rep)
		}
		if text := h.replay(t, auditor, s.SessionID, "text"); strings.Contains(text, "open-the-pod-bay-doors") || strings.Contains(text, token) {
			t.Fatalf("transcript holds a secret:\n%s", text)
		}
	}
	want := []string{"http.exchange POST /web/v1/login ok", "http.exchange GET /web/v1/events ok", "http.websocket GET /web/v1/ws ok"}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
	if len(har.Log.Entries) != 3 {
		t.Fatalf("%d HAR entries", len(har.Log.Entries))
	}
	login0, sse, ws := har.Log.Entries[0], har.Log.Entries[1], har.Log.Entries[2]
	if login0.Request.PostData.Text != `{"user":"hal","password":"[masked:json_field]"}` {
		t.Fatalf("recorded login body %q", login0.Request.PostData.Text)
	}
	// The answer is recorded as sent, but for the masked token field.
	if !strings.HasPrefix(login0.Response.Content.Text, `{"ok":true,"access_token":"[masked:json_field]","auth":`) {
		t.Fatalf("recorded login answer %q", login0.Response.Content.Text)
	}
	if sse.Response.Content.Text != string(events) {
		t.Fatalf("recorded events %q", sse.Response.Content.Text)
	}
	var msgs []string
	for _, m := range ws.WebSocketMessages {
		msgs = append(msgs, m.Type+":"+m.Data)
	}
	if strings.Join(msgs, " ") != "send:one receive:echo:one send:two receive:echo:two send:1000 bye receive:1000 bye" {
		t.Fatalf("websocket messages %v", msgs)
	}
}
