package httpproxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/tapline/tapline/schemas"
)

// patternReader yields writePattern's bytes.
type patternReader struct {
	buf []byte
	off int64
	n   int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off)
	for i := int64(0); i < k; i++ {
		b[i] = p.buf[(p.off+i)%int64(len(p.buf))]
	}
	p.off += k
	return int(k), nil
}

// 64 MiB each way: the bytes arrive intact, and the recorded fragments hash to
// the same digest as the bodies.
func TestLargeBodiesBothWays(t *testing.T) {
	skipShort(t)
	const size = 64 << 20
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{mode: "buffered", targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	cl := g.client(true)
	tok := g.token("bulk", "dev")

	ref := sha256.New()
	writePattern(ref, size)
	want := hex.EncodeToString(ref.Sum(nil))

	req, _ := http.NewRequest("GET", g.base+fmt.Sprintf("/api/large?n=%d", size), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	req, _ = http.NewRequest("PUT", g.base+"/api/upload", &patternReader{buf: pattern(64 << 10), n: size})
	req.Header.Set("Authorization", "Bearer "+tok)
	req.ContentLength = -1 // chunked: streamed through, never whole in memory
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.Bytes != size || got.SHA256 != want {
		t.Fatalf("upload: target got %+v", got)
	}
	cl.Transport.(*http.Transport).CloseIdleConnections()
	fs := g.frames.session(bySubject("bulk"))
	verifyChain(t, g.signer, fs)
	sid := fs[0].SessionID
	if d := g.frames.bodyDigest(sid, schemas.Server, 1); d == nil || d.n != size || d.sum() != want {
		t.Fatalf("recorded download: %+v", d)
	}
	if d := g.frames.bodyDigest(sid, schemas.Client, 2); d == nil || d.n != size || d.sum() != want {
		t.Fatalf("recorded upload: %+v", d)
	}
}

// Trailers reach the agent and are recorded.
func TestTrailersRelayedAndRecorded(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	for _, h2 := range []bool{false, true} {
		cl := g.client(h2)
		req, _ := http.NewRequest("GET", g.base+"/api/trailers", nil)
		req.Header.Set("Authorization", "Bearer "+g.token(fmt.Sprint("trailer-", h2), "dev"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "body with a trailer\n" || resp.Trailer.Get("X-Checksum") != "c0ffee" {
			t.Fatalf("h2=%v: body %q trailer %v", h2, body, resp.Trailer)
		}
		cl.Transport.(*http.Transport).CloseIdleConnections()
		xs := exchanges(t, g.frames.session(bySubject(fmt.Sprint("trailer-", h2))))
		if tr := xs[0].ResponseEnd.Trailers; len(tr) != 1 || tr[0].Value != "c0ffee" {
			t.Fatalf("recorded trailers %v", tr)
		}
	}
}
