package httpproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (needs Kafka)")
	}
}

// appTarget is a target entry for an app upstream with a bearer credential.
func appTarget(name string, up *upstream, extra string) string {
	return fmt.Sprintf(`  - name: %s
    protocol: http
    address: %q
    groups: [dev]
    http: {ca_file: %q, bearer: {env: APP_TOKEN} %s}
`, name, up.addr, up.caFile, extra)
}

func curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "60"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// A JSON API through curl (HTTP/1.1 and HTTP/2) and a Go client: the agent
// gets exactly the target's answer, the target gets the gateway's credential
// and never the agent's token, and the frames reassemble to the exact bodies.
func TestJSONExchangesWithRealClients(t *testing.T) {
	skipShort(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "target-secret"}})
	tok := g.token("alice", "dev")
	reqBody := `{"name":"widget","password":"hunter2"}`
	want := fmt.Sprintf(`{"method":"POST","received":%d,"token":"abc123","items":[1,2,3]}`, len(reqBody))

	for _, proto := range []string{"--http1.1", "--http2"} {
		out, _ := curl(t, proto, "--cacert", g.caPath(), "-H", "Authorization: Bearer "+tok,
			"-H", "Content-Type: application/json", "--data-binary", reqBody, g.base+"/api/v1/items?page=2")
		if out != want {
			t.Fatalf("curl %s got %q, want %q", proto, out, want)
		}
	}
	resp, err := g.client(true).Post(g.base+"/api/v1/items?page=2", "application/json", strings.NewReader(reqBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token: status %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", g.base+"/api/v1/items?page=2", strings.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err = g.client(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != want || resp.Proto != "HTTP/2.0" {
		t.Fatalf("Go client got %s %q", resp.Proto, got)
	}

	seen := a.requests()
	if len(seen) != 3 {
		t.Fatalf("target saw %d requests, want 3", len(seen))
	}
	for _, s := range seen {
		if s.Auth != "Bearer target-secret" || string(s.Body) != reqBody || s.Path != "/v1/items?page=2" {
			t.Fatalf("target saw %+v", s)
		}
		if strings.Contains(fmt.Sprint(s.Header), tok) {
			t.Fatal("the agent's token reached the target")
		}
	}

	// Each curl run is a connection, so a session of its own; the Go client's
	// requests share one connection, hence one session.
	fs := g.frames.session(func(f schemas.Frame) bool {
		return f.Start != nil && f.Start.Subject == "alice" && f.Start.Params["proto"] == "HTTP/2.0"
	})
	verifyChain(t, g.signer, fs)
	xs := exchanges(t, fs)
	if len(xs) != 1 {
		t.Fatalf("%d exchanges in the session, want 1", len(xs))
	}
	x := xs[0]
	if !x.Complete() || x.Request.Method != "POST" || x.Request.Target != "/v1/items?page=2" || x.Request.Path != "/api/v1/items?page=2" {
		t.Fatalf("exchange %+v", x.Request)
	}
	if string(x.RequestBody.Data) != reqBody || string(x.ResponseBody.Data) != want || x.Response.Status != 200 {
		t.Fatalf("recorded bodies %q / %q", x.RequestBody.Data, x.ResponseBody.Data)
	}
	if hs.Get(x.Request.Headers, "Authorization") != "" {
		t.Fatal("a credential was recorded in the request head")
	}
	for _, f := range fs {
		if bytes.Contains(f.Payload, []byte(tok)) || bytes.Contains(f.Payload, []byte("target-secret")) {
			t.Fatalf("seq %d (%s) holds a token", f.Seq, f.Kind)
		}
	}
	if x.FirstByte.Before(x.Started) || x.Ended.Before(x.FirstByte) {
		t.Fatalf("timing out of order: %v %v %v", x.Started, x.FirstByte, x.Ended)
	}
}

// An SSE stream reaches the agent event by event (the next event is only sent
// once the agent has the previous one) and is recorded as it flows.
func TestSSEStreamedAndRecordedAsItFlows(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	req, _ := http.NewRequest("GET", g.base+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+g.token("sse-agent", "dev"))
	req.Header.Set("Accept", "text/event-stream")
	cl := g.client(false)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []byte
	for i := 1; i <= 3; i++ {
		a.sseNext <- struct{}{}
		want := fmt.Sprintf("id: %d\nevent: tick\ndata: {\"n\":%d}\n\n", i, i)
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != want {
			t.Fatalf("event %d: %q, %v", i, buf, err)
		}
		all = append(all, buf...)
	}
	rest, _ := io.ReadAll(resp.Body)
	if len(rest) != 0 {
		t.Fatalf("extra bytes %q", rest)
	}
	cl.Transport.(*http.Transport).CloseIdleConnections() // the session ends with the connection
	fs := g.frames.session(bySubject("sse-agent"))
	verifyChain(t, g.signer, fs)
	xs := exchanges(t, fs)
	if len(xs) != 1 || !bytes.Equal(xs[0].ResponseBody.Data, all) {
		t.Fatalf("recorded %q", xs[0].ResponseBody.Data)
	}
	if xs[0].ResponseBody.Frames < 3 {
		t.Fatalf("stream recorded in %d frames, want one per event", xs[0].ResponseBody.Frames)
	}
}

// A WebSocket through the gateway: one frame per message each way, close
// codes both ways, subprotocol negotiated end to end.
func TestWebSocketMessagesAndCloseCodes(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + g.token("ws-agent", "dev")}}
	c, resp, err := websocket.Dial(ctx, "wss://"+g.addr+"/api/ws", &websocket.DialOptions{
		HTTPClient: g.client(false), HTTPHeader: h, Subprotocols: []string{"echo.v1"}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	if c.Subprotocol() != "echo.v1" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if typ, d, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(d) != "ECHO hello" {
		t.Fatalf("read %v %q %v", typ, d, err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, bin); err != nil {
		t.Fatal(err)
	}
	if typ, d, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(d, bin) {
		t.Fatalf("read %v %q %v", typ, d, err)
	}
	if err := c.Close(4001, "client done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case ce := <-a.wsClosed:
		if ce.Code != 4001 || ce.Reason != "client done" {
			t.Fatalf("target saw close %v", ce)
		}
	case <-ctx.Done():
		t.Fatal("target never saw the close")
	}
	fs := g.frames.session(bySubject("ws-agent"))
	verifyChain(t, g.signer, fs)
	xs := exchanges(t, fs)
	if len(xs) != 1 || !xs[0].WebSocket() || !xs[0].Complete() {
		t.Fatalf("exchanges: %+v", xs)
	}
	var got []string
	for _, m := range xs[0].Messages {
		switch {
		case m.Close != nil:
			got = append(got, fmt.Sprintf("%s close %d %s", m.Dir, m.Close.Code, m.Close.Reason))
		case m.Binary:
			got = append(got, fmt.Sprintf("%s binary %x", m.Dir, m.Data))
		default:
			got = append(got, fmt.Sprintf("%s text %s", m.Dir, m.Data))
		}
	}
	want := []string{"CLIENT text hello", "SERVER text ECHO hello", "CLIENT binary 000102fffe", "SERVER binary 000102fffe",
		"CLIENT close 4001 client done", "SERVER close 4001 client done"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("recorded messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cmd := xs[0].Command()
	if cmd.Kind != hs.CommandWebSocket || cmd.Rows != 4 {
		t.Fatalf("command %+v", cmd)
	}
	var j []hs.JSON
	var buf bytes.Buffer
	hs.WriteJSON(&buf, xs)
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil || len(j[0].Messages) != 6 {
		t.Fatalf("json: %v", err)
	}
}
