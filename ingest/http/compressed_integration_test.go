package httpproxy_test

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// maskSession masks recorded frames as the mask processor does (the rules
// of schemas/http) and returns the stored bodies of its exchanges and their
// heads, as replay reads them (split or complete frames alike).
func maskSession(fs []schemas.Frame, r hs.MaskRules) (req, resp []byte, heads []*hs.Head) {
	st := &hs.MaskState{}
	masked := make([]schemas.Frame, len(fs))
	for i := range fs {
		masked[i] = fs[i]
		masked[i].Payload = st.MaskFrame(&fs[i], r)
	}
	xs, _ := hs.Exchanges(masked, 64<<20)
	for _, x := range xs {
		req = append(req, x.RequestBody.Data...)
		resp = append(resp, x.ResponseBody.Data...)
		heads = append(heads, x.Request, x.Response)
	}
	return req, resp, heads
}

// Compressed bodies from real peers are masked on their decoded content: a
// chunked gzip response from nginx and a gzip JSON request from curl. The
// agent still gets the compressed bytes; what is stored is decoded and masked.
func TestCompressedBodiesAreMaskedDecoded(t *testing.T) {
	skipShort(t)
	n := testenv.NginxTarget(t)
	up := startUpstream(t, newApp())
	g := startGateway(t, gatewayOpts{targets: nginxTarget(n) + appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	rules := hs.MaskRules{
		Field: func(n string) bool { return n == "password" },
		Text:  func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("lazy dog"), []byte("[masked:dog]")) },
	}

	_, want := direct(t, n, "/words.txt", map[string][]string{"Accept-Encoding": {"gzip"}})
	got := filepath.Join(t.TempDir(), "words.gz")
	curl(t, "--http2", "--cacert", g.caPath(), "-H", "Authorization: Bearer "+g.token("gz-down", "dev"),
		"-H", "Accept-Encoding: gzip", "-o", got, g.base+"/static/words.txt")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatalf("the agent did not get nginx's gzip bytes: %d vs %d", len(b), len(want))
	}
	fs := g.frames.session(bySubject("gz-down"))
	verifyChain(t, g.signer, fs)
	_, resp, heads := maskSession(fs, rules)
	words, _ := os.ReadFile(filepath.Join(n.Root, "words.txt"))
	if !bytes.Equal(resp, bytes.ReplaceAll(words, []byte("lazy dog"), []byte("[masked:dog]"))) {
		t.Fatalf("stored response: %d bytes, want the decoded masked file (%d bytes)", len(resp), len(words))
	}
	if len(heads) != 2 || hs.Get(heads[1].Headers, hs.DecodedHeader) != "gzip" || hs.Get(heads[1].Headers, "Content-Encoding") != "" {
		t.Fatalf("stored response head not marked decoded: %+v", heads)
	}

	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(`{"user":"al","password":"hunter2"}`))
	zw.Close()
	body := filepath.Join(t.TempDir(), "req.json.gz")
	writeFile(t, body, z.Bytes())
	out, _ := curl(t, "--http1.1", "--cacert", g.caPath(), "-H", "Authorization: Bearer "+g.token("gz-up", "dev"),
		"-H", "Content-Type: application/json", "-H", "Content-Encoding: gzip", "--data-binary", "@"+body, g.base+"/api/v1/items")
	if !strings.Contains(out, `"received":`) {
		t.Fatalf("app answer: %q", out)
	}
	req, _, _ := maskSession(g.frames.session(bySubject("gz-up")), rules)
	if string(req) != `{"user":"al","password":"[masked:json_field]"}` {
		t.Fatalf("stored request body: %q", req)
	}
}
