package httpproxy_test

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Concurrent first requests of one identity on one HTTP/2 connection share one
// session: none is refused because another started a session meanwhile. The
// target holds every request until all have arrived, so all of them start
// their session at the same time.
func TestConcurrentStreamsShareOneSession(t *testing.T) {
	skipShort(t)
	const n = 16
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	var once sync.Once
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		arrived <- struct{}{}
		if len(arrived) == n {
			once.Do(func() { close(release) })
		}
		select {
		case <-release:
		case <-time.After(60 * time.Second):
		}
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	c := g.client(true)

	// Another identity opens the connection, so every stream below rides on it.
	get(t, c, g.base+"/api/warm", g.token("warm", "dev"))
	tok := g.token("alice", "dev")
	var wg sync.WaitGroup
	status := make(chan int, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", g.base+"/api/slow", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			if resp.Proto != "HTTP/2.0" {
				t.Errorf("proto %s, want HTTP/2.0", resp.Proto)
			}
			status <- resp.StatusCode
		})
	}
	wg.Wait()
	close(status)
	for s := range status {
		if s != 200 {
			t.Errorf("status %d, want 200", s)
		}
	}
	if t.Failed() {
		return
	}
	c.CloseIdleConnections()
	fs := g.frames.session(func(f schemas.Frame) bool { return f.Start != nil && f.Start.Subject == "alice" })
	verifyChain(t, g.signer, fs)
	if xs := exchanges(t, fs); len(xs) != n {
		t.Fatalf("%d exchanges in alice's session, want %d", len(xs), n)
	}
	if k := g.frames.count(func(f schemas.Frame) bool { return f.Start != nil && f.Start.Subject == "alice" }); k != 1 {
		t.Fatalf("alice has %d sessions on one connection, want 1", k)
	}
}

func get(t *testing.T, c *http.Client, url, tok string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
}

// count is the number of sessions (complete or not) whose first frame matches.
func (c *collector) count(match func(first schemas.Frame) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, fs := range c.sessions {
		if fs[0].Seq == 0 && match(fs[0]) {
			k++
		}
	}
	return k
}
