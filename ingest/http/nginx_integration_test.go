package httpproxy_test

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
)

func nginxTarget(n testenv.Nginx) string {
	return fmt.Sprintf(`  - name: static
    protocol: http
    address: %q
    groups: [dev]
    http: {ca_file: %q}
`, n.Addr, n.CA)
}

// direct fetches from nginx itself, with the same request headers.
func direct(t *testing.T, n testenv.Nginx, path string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	ca, _ := os.ReadFile(n.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+n.Addr+path, nil)
	req.Header = h
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// nginx as a real target: static files, a 64 MiB file, gzip (chunked), keep-alive.
func TestNginxTarget(t *testing.T) {
	skipShort(t)
	n := testenv.NginxTarget(t)
	g := startGateway(t, gatewayOpts{mode: "buffered", targets: nginxTarget(n)})
	tok := g.token("nginx-agent", "dev")
	hello, _ := os.ReadFile(filepath.Join(n.Root, "hello.txt"))
	for _, proto := range []string{"--http1.1", "--http2"} {
		out, _ := curl(t, proto, "--cacert", g.caPath(), "-H", "Authorization: Bearer "+tok, g.base+"/static/hello.txt")
		if out != string(hello) {
			t.Fatalf("curl %s: %q", proto, out)
		}
	}
	large, _ := os.ReadFile(filepath.Join(n.Root, "large.bin"))
	dst := filepath.Join(t.TempDir(), "large.bin")
	curl(t, "--http2", "--cacert", g.caPath(), "-H", "Authorization: Bearer "+tok, "-o", dst, g.base+"/static/large.bin")
	got, _ := os.ReadFile(dst)
	if sha(got) != sha(large) {
		t.Fatalf("large file: %d bytes, digest differs", len(got))
	}

	// gzip: the agent gets nginx's compressed bytes as nginx sends them.
	h := http.Header{"Accept-Encoding": {"gzip"}}
	dresp, want := direct(t, n, "/words.txt", h)
	if dresp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("nginx did not compress: %v", dresp.Header)
	}
	cl := g.client(false)
	cl.Transport.(*http.Transport).DisableCompression = true
	keepTok := g.token("nginx-keepalive", "dev")
	var bodies [][]byte
	for range 20 { // one keep-alive connection, so one session of 20 exchanges
		req, _ := http.NewRequest("GET", g.base+"/static/words.txt", nil)
		req.Header.Set("Authorization", "Bearer "+keepTok)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(b, want) {
			t.Fatalf("gzip through the gateway: %d bytes, %v", len(b), resp.Header)
		}
		bodies = append(bodies, b)
	}
	zr, err := gzip.NewReader(bytes.NewReader(bodies[0]))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	words, _ := os.ReadFile(filepath.Join(n.Root, "words.txt"))
	if !bytes.Equal(plain, words) {
		t.Fatal("gunzipped body differs from the file")
	}
	cl.Transport.(*http.Transport).CloseIdleConnections()
	fs := g.frames.session(bySubject("nginx-keepalive"))
	verifyChain(t, g.signer, fs)
	xs := exchanges(t, fs)
	if len(xs) != 20 {
		t.Fatalf("%d exchanges, want 20", len(xs))
	}
	for _, x := range xs {
		if !bytes.Equal(x.ResponseBody.Data, want) {
			t.Fatal("recorded gzip body differs from nginx's")
		}
	}
}

// Python clients: requests against nginx and the app, websockets against the app.
func TestPythonClients(t *testing.T) {
	skipShort(t)
	n := testenv.NginxTarget(t)
	py := testenv.HTTPPython(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: nginxTarget(n) + appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	tok := g.token("py-agent", "dev")
	script := `
import asyncio, json, ssl, sys
import requests, websockets
base, ca, tok = sys.argv[1], sys.argv[2], sys.argv[3]
s = requests.Session()
s.headers["Authorization"] = "Bearer " + tok
r = s.get(base + "/static/hello.txt", verify=ca)
print("hello", r.status_code, repr(r.text))
r = s.post(base + "/api/v1/items", json={"a": 1}, verify=ca)
print("json", r.status_code, r.json()["received"])
r = s.get(base + "/api/v1/items", verify=ca, headers={"Authorization": "Bearer nope"})
print("denied", r.status_code, "invalid_token" in r.headers.get("WWW-Authenticate", ""))
async def ws():
    ctx = ssl.create_default_context(cafile=ca)
    url = base.replace("https://", "wss://") + "/api/ws"
    async with websockets.connect(url, ssl=ctx, additional_headers={"Authorization": "Bearer " + tok}, subprotocols=["echo.v1"]) as c:
        await c.send("from python")
        print("ws", await c.recv())
        await c.send(b"\x00\x01")
        print("wsbin", (await c.recv()).hex())
asyncio.run(ws())
`
	out, err := exec.Command(py, "-c", script, g.base, g.caPath(), tok).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := "hello 200 'hello from nginx\\n'\njson 200 8\ndenied 401 True\nws ECHO from python\nwsbin 0001\n"
	if string(out) != want {
		t.Fatalf("python clients:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(fmt.Sprint(a.requests()), "Bearer x") {
		t.Fatal("the app did not get the gateway's credential")
	}
}
