package httpproxy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// itGateway is a real gateway (ingest/gateway with its HTTP listener) in front
// of the test's upstreams, recording into a topic of its own on a real Kafka.
type itGateway struct {
	t       *testing.T
	dir     string
	addr    string // host:port of the HTTP listener
	base    string // https://127.0.0.1:PORT
	caFile  string // the gateway's certificate, for clients
	issuer  *devissuer.Issuer
	brokers []string
	topic   string
	signer  ed25519.PublicKey
	frames  *collector
	cancel  context.CancelFunc
	done    chan error
}

type gatewayOpts struct {
	brokers        []string
	mode           string // strict (default) | buffered
	produceTimeout time.Duration
	targets        string // YAML list items under targets:
	httpExtra      string // extra keys of the http section, flow style, leading comma
	env            map[string]string
}

func startGateway(t *testing.T, o gatewayOpts) *itGateway {
	t.Helper()
	if o.brokers == nil {
		o.brokers = testenv.Kafka(t)
	}
	if o.produceTimeout == 0 {
		o.produceTimeout = 15 * time.Second
	}
	if o.mode == "" {
		o.mode = "strict"
	}
	g := &itGateway{t: t, dir: t.TempDir(), brokers: o.brokers, topic: "tapline.frames.raw.httptest." + randHex(6)}
	createTopic(t, g.brokers, g.topic)
	g.issuer = startIssuer(t, g.dir)
	cfgYAML := fmt.Sprintf(`
gateway_id: gw-http-test
data_dir: %[1]s
kafka: {brokers: [%[2]q], topic: %[3]s, mode: %[4]s, produce_timeout: %[5]s}
oidc: {issuer: %[6]q, audience: tapline-gateway}
http: {listen: "127.0.0.1:0", base_domain: gw.test %[7]s}
targets:
%[8]s
`, g.dir, strings.Join(g.brokers, ","), g.topic, o.mode, o.produceTimeout, g.issuer.URL(), o.httpExtra, o.targets)
	lookup := func(k string) (string, bool) {
		if v, ok := o.env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	cfg, err := gateway.Parse([]byte(cfgYAML), lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, cfg, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	g.cancel, g.done = cancel, make(chan error, 1)
	go func() { g.done <- gw.Serve(ctx) }()
	t.Cleanup(g.stop)
	g.addr = gw.Addr("http").String()
	g.base = "https://" + g.addr
	g.caFile = filepath.Join(g.dir, "tls.crt")
	g.signer = ed25519.PublicKey(gw.PublicKey())
	g.frames = collect(t, g.brokers, g.topic)
	return g
}

// stop shuts the gateway down (idempotent); live sessions are ended.
func (g *itGateway) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	if err := <-g.done; err != nil {
		g.t.Logf("gateway: %v", err)
	}
	g.cancel = nil
}

func startIssuer(t *testing.T, dir string) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		iss.Serve(ctx, "")
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return iss
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev issuer not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *itGateway) token(sub string, groups ...string) string {
	g.t.Helper()
	tok, err := g.issuer.Mint(sub, groups, time.Hour)
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

// certPool trusts the gateway's (self-signed, generated) certificate.
func (g *itGateway) certPool() *x509.CertPool {
	g.t.Helper()
	b := findCert(g.t, g.dir)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		g.t.Fatal("gateway certificate: no PEM")
	}
	return pool
}

func findCert(t *testing.T, dir string) []byte {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "*.crt"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil && bytes.Contains(b, []byte("CERTIFICATE")) {
			return b
		}
	}
	t.Fatalf("no gateway certificate in %s", dir)
	return nil
}

// caPath writes the gateway's certificate where curl and Python can read it.
func (g *itGateway) caPath() string {
	g.t.Helper()
	if _, err := os.Stat(g.caFile); err != nil {
		writeFile(g.t, g.caFile, findCert(g.t, g.dir))
	}
	return g.caFile
}

// client is a Go HTTP client trusting the gateway; h2 selects HTTP/2.
func (g *itGateway) client(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.certPool(), ServerName: "127.0.0.1"}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	g.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// upstream is an app server over TLS with its certificate in a CA file.
type upstream struct {
	*httptest.Server
	caFile string
	addr   string
}

func startUpstream(t *testing.T, h http.Handler) *upstream {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "upstream-ca.pem")
	writeFile(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return &upstream{Server: srv, caFile: ca, addr: srv.Listener.Addr().String()}
}

func createTopic(t *testing.T, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	testenv.CreateTopic(t, brokers, topic, 1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm.DeleteTopics(ctx, topic)
		cl.Close()
	})
}

// collector consumes the gateway's topic, checks every payload against its
// digest, and keeps frames by session (payload bytes beyond keep are only counted).
type collector struct {
	t        *testing.T
	mu       sync.Mutex
	sessions map[string][]schemas.Frame
	digests  map[string]*bodyDigest
	bad      []string
}

const keptPayload = 4 << 20

func collect(t *testing.T, brokers []string, topic string) *collector {
	c := &collector{t: t, sessions: map[string][]schemas.Frame{}, digests: map[string]*bodyDigest{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(c.add)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

func (c *collector) add(r *kgo.Record) {
	f, err := schemas.FrameCodec().Decode(r.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	if !bytes.Equal(schemas.PayloadDigest(f.PayloadSalt, f.Payload), f.PayloadDigest) {
		c.bad = append(c.bad, fmt.Sprintf("session %s seq %d: payload does not match its digest", f.SessionID, f.Seq))
	}
	if hs.IsBody(f.Kind) {
		key := f.SessionID + "/" + string(f.Direction) + "/" + fmt.Sprint(f.Channel)
		d := c.digests[key]
		if d == nil {
			d = newBodyDigest()
			c.digests[key] = d
		}
		d.add(f.Payload)
	}
	if len(f.Payload) > keptPayload {
		f.Payload = f.Payload[:keptPayload]
	}
	c.sessions[f.SessionID] = append(c.sessions[f.SessionID], f)
}

// session waits for a complete session (start or denial through end) whose
// first frame satisfies match, and returns its frames.
func (c *collector) session(match func(first schemas.Frame) bool) []schemas.Frame {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if fs := c.find(match); fs != nil {
			return fs
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no matching complete session recorded within 60s")
	return nil
}

func (c *collector) find(match func(first schemas.Frame) bool) []schemas.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		c.t.Fatalf("bad frames: %v", c.bad)
	}
	for _, fs := range c.sessions {
		if fs[0].Seq != 0 || !match(fs[0]) || fs[len(fs)-1].Kind != schemas.KindSessionEnd {
			continue
		}
		return slices.Clone(fs)
	}
	return nil
}

func (c *collector) bodyDigest(session string, dir schemas.Direction, ch int64) *bodyDigest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.digests[session+"/"+string(dir)+"/"+fmt.Sprint(ch)]
}

// verifyChain checks what `tapline verify` checks: seq without gaps, every
// link, and the gateway's signature on the end.
func verifyChain(t *testing.T, pub ed25519.PublicKey, fs []schemas.Frame) *schemas.SessionEnd {
	t.Helper()
	prev := schemas.ZeroHash
	for i, f := range fs {
		if f.Seq != int64(i) {
			t.Fatalf("seq %d at position %d", f.Seq, i)
		}
		h, err := schemas.ChainHash(&f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.PrevHash, prev) || !bytes.Equal(h, f.Hash) {
			t.Fatalf("seq %d: broken link", f.Seq)
		}
		prev = f.Hash
	}
	end := fs[len(fs)-1].End
	if end == nil {
		t.Fatal("last frame has no end")
	}
	if err := schemas.VerifyEnd(pub, fs[0].SessionID, end); err != nil {
		t.Fatalf("end signature: %v", err)
	}
	return end
}

func bySubject(sub string) func(schemas.Frame) bool {
	return func(f schemas.Frame) bool { return f.Start != nil && f.Start.Subject == sub }
}

func exchanges(t *testing.T, fs []schemas.Frame) []*hs.Exchange {
	t.Helper()
	xs, problems := hs.Exchanges(fs, 8<<20)
	if len(problems) > 0 {
		t.Fatalf("payloads that do not decode: %v", problems)
	}
	return xs
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or 60 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errStop = errors.New("stop")

func localAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func asClose(err error, ce *websocket.CloseError) bool { return errors.As(err, ce) }
