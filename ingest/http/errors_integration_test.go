package httpproxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

func do(t *testing.T, cl *http.Client, method, url, token string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Bad input is answered in HTTP's terms, and denials are recorded.
func TestRefusalsInHTTPTerms(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	down := localAddr(t) // nothing listens there
	targets := appTarget("api", up, "") + fmt.Sprintf(`  - name: ops
    protocol: http
    address: %q
    groups: [ops]
    http: {ca_file: %q}
  - name: gone
    protocol: http
    address: %q
    groups: [dev]
  - name: untrusted
    protocol: http
    address: %q
    groups: [dev]
`, up.addr, up.caFile, down, up.addr)
	g := startGateway(t, gatewayOpts{targets: targets, env: map[string]string{"APP_TOKEN": "x"}})
	cl := g.client(false)
	tok := g.token("bob", "dev")

	resp, body := do(t, cl, "GET", g.base+"/api/v1/items", "", nil)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="tapline"` {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body = do(t, cl, "GET", g.base+"/api/v1/items", "not.a.jwt", nil)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad token: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	resp, body = do(t, cl, "GET", g.base+"/ops/v1/items", tok, nil)
	if resp.StatusCode != 403 || !strings.Contains(body, "ops") {
		t.Fatalf("forbidden: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, cl, "GET", g.base+"/nosuch/v1/items", tok, nil)
	if resp.StatusCode != 404 || !strings.Contains(body, "unknown target") {
		t.Fatalf("unknown target: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, cl, "GET", g.base+"/gone/x", tok, nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "cannot connect") || resp.Header.Get("X-Tapline-Error") != "upstream_unreachable" {
		t.Fatalf("target down: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, cl, "GET", g.base+"/untrusted/x", tok, nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "not trusted") {
		t.Fatalf("untrusted target certificate: %d %s", resp.StatusCode, body)
	}
	big := strings.Repeat("a", 80<<10)
	req, _ := http.NewRequest("GET", g.base+"/api/v1/items", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Big", big)
	r2, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 431 {
		t.Fatalf("oversized head: %d", r2.StatusCode)
	}
	if n := len(a.requests()); n != 0 {
		t.Fatalf("target saw %d requests, want none", n)
	}

	// The forbidden request is recorded as a denial.
	fs := g.frames.session(func(f schemas.Frame) bool {
		return f.Kind == schemas.KindSessionDenied && f.Start != nil && f.Start.Target == "ops"
	})
	if fs[0].Protocol != schemas.HTTP || !strings.Contains(fs[len(fs)-1].End.Reason, "denied") {
		t.Fatalf("denial: %+v", fs[len(fs)-1].End)
	}
	// The 502s are recorded exchanges answered by the gateway.
	cl.Transport.(*http.Transport).CloseIdleConnections()
	fs = g.frames.session(func(f schemas.Frame) bool { return f.Start != nil && f.Start.Target == "gone" })
	xs := exchanges(t, fs)
	if len(xs) != 1 || xs[0].Response.Status != 502 || xs[0].Response.Gateway != "upstream_unreachable" {
		t.Fatalf("recorded: %+v", xs[0].Response)
	}
}

// With Kafka gone the gateway fails closed: 503 and nothing reaches the target.
func TestKafkaDownRefusesAndForwardsNothing(t *testing.T) {
	skipShort(t)
	broker := testenv.PrivateKafka(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{brokers: broker.Brokers(), produceTimeout: 3 * time.Second, targets: appTarget("api", up, ""),
		env: map[string]string{"APP_TOKEN": "x"}})
	tok := g.token("carol", "dev")
	live := g.client(false)
	// A fresh broker may take a while to take its first records.
	waitFor(t, "Kafka to take frames", func() bool {
		resp, _ := do(t, live, "GET", g.base+"/api/v1/items", tok, nil)
		return resp.StatusCode == 200
	})
	broker.Stop()
	before := len(a.requests())
	// The live connection's session and a new connection both fail closed.
	for _, cl := range []*http.Client{live, g.client(true)} {
		resp, body := do(t, cl, "POST", g.base+"/api/v1/items", tok, strings.NewReader(`{"a":1}`))
		if resp.StatusCode != 503 || !strings.Contains(body, "recording unavailable") {
			t.Fatalf("with Kafka down: %d %s", resp.StatusCode, body)
		}
	}
	if n := len(a.requests()); n != before {
		t.Fatalf("the target saw %d requests while Kafka was down", n-before)
	}
	broker.Start() // the recorder writes the failed sessions' ends once Kafka is back
}
