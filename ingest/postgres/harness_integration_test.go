package postgres_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

// gw is a gateway built from a YAML config exactly as `tapline gateway` builds
// it, in front of the real test Postgres and recording to a real Kafka topic of
// its own.
type gw struct {
	t       *testing.T
	addr    string
	host    string
	port    string
	iss     *devissuer.Issuer
	brokers []string
	topic   string
	pub     ed25519.PublicKey
	pg      testenv.PG
	metrics string // metrics listener address
	stop    func()
}

type gwOpts struct {
	mode           string // strict (default) | buffered
	produceTimeout string // default 10s
	plaintext      bool   // allow_plaintext on the loopback listener
	brokers        []string
	clockSkew      string
	maxBuffered    int64
	wrongCA        bool // target "app" verified against a CA that did not sign it
}

func startGateway(t *testing.T, o gwOpts) *gw {
	t.Helper()
	pg := postgresEnv(t)
	if o.brokers == nil {
		o.brokers = kafkaBrokers(t)
	}
	if o.mode == "" {
		o.mode = "strict"
	}
	if o.produceTimeout == "" {
		o.produceTimeout = "10s"
	}
	if o.clockSkew == "" {
		o.clockSkew = "1m"
	}
	if o.maxBuffered == 0 {
		o.maxBuffered = 64 << 20
	}
	dir := t.TempDir()
	iss, err := devissuer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	issDone := make(chan struct{})
	go func() { defer close(issDone); _ = iss.Serve(ctx, "") }()
	waitListening(t, strings.TrimPrefix(iss.URL(), "http://"))

	caFile := pg.SSLCert
	if o.wrongCA {
		caFile = otherCA(t, dir)
	}
	topic := "tapline.test.pg." + uuid.NewString()[:8]
	createTopic(t, o.brokers, topic)
	yaml := fmt.Sprintf(`
gateway_id: gw-test
data_dir: %s
kafka: {brokers: [%s], topic: %s, mode: %s, produce_timeout: %s, max_buffered_bytes: %d}
oidc: {issuer: %q, audience: tapline-gateway, clock_skew: %s}
metrics: {listen: "127.0.0.1:0"}
postgres: {listen: "127.0.0.1:0", allow_plaintext: %v, max_message_bytes: 4194304}
targets:
  - name: app
    protocol: postgres
    address: %s
    groups: [dba]
    postgres: {database: %s, user: %s, password_env: GW_PW, tls: verify-full, ca_file: %s}
  - name: app_md5
    protocol: postgres
    address: %s
    groups: [dba]
    postgres: {database: %s, user: %s, password_file: %s, tls: disable, allow_md5: true}
`, dir, strings.Join(o.brokers, ","), topic, o.mode, o.produceTimeout, o.maxBuffered, iss.URL(), o.clockSkew, o.plaintext,
		pg.Addr(), pg.DB, pg.GWUser, caFile,
		pg.Addr(), pg.DB, pg.MD5User, writeSecret(t, dir, pg.MD5Password))
	cfg, err := gateway.Parse([]byte(yaml), func(k string) (string, bool) {
		if k == "GW_PW" {
			return pg.GWPassword, true
		}
		return "", false
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := gateway.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	addr := g.Addr("postgres").String()
	host, port, _ := net.SplitHostPort(addr)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway: %v", err)
			}
			<-issDone
		})
	}
	t.Cleanup(stop)
	return &gw{t: t, addr: addr, host: host, port: port, iss: iss, brokers: o.brokers, topic: topic,
		pub: ed25519.PublicKey(g.PublicKey()), pg: pg, metrics: g.Addr("metrics").String(), stop: stop}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func writeSecret(t *testing.T, dir, secret string) string {
	p := dir + "/md5.pw"
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createTopic(t *testing.T, brokers []string, topic string) {
	t.Helper()
	testenv.CreateTopic(t, brokers, topic, 1)
}

func (g *gw) token(sub string, groups ...string) string {
	g.t.Helper()
	tok, err := g.iss.Mint(sub, groups, 10*time.Minute)
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

// connString for an agent named app (application_name) connecting to target db.
func (g *gw) connString(db, token, sslmode, app string) string {
	return fmt.Sprintf("host=%s port=%s user=agent dbname=%s password=%s sslmode=%s application_name=%s connect_timeout=20",
		g.host, g.port, db, token, sslmode, app)
}

func (g *gw) connect(t *testing.T, app string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.connString("app", g.token("alice", "dba"), "require", app))
	if err != nil {
		t.Fatalf("connect through the gateway: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// admin connects to Postgres directly, bypassing the gateway, to check what
// reached the server.
func (g *gw) admin(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// recordedSession waits until the topic holds an ended session matching pred
// and returns its frames in seq order.
func (g *gw) recordedSession(t *testing.T, pred func(f *schemas.Frame) bool) []schemas.Frame {
	t.Helper()
	sessions := g.readSessions(t, func(all map[string][]schemas.Frame) bool {
		for _, fs := range all {
			if len(fs) > 0 && pred(&fs[0]) && fs[len(fs)-1].Kind == schemas.KindSessionEnd {
				return true
			}
		}
		return false
	})
	for _, fs := range sessions {
		if len(fs) > 0 && pred(&fs[0]) && fs[len(fs)-1].Kind == schemas.KindSessionEnd {
			return fs
		}
	}
	panic("unreachable")
}

func byApp(app string) func(f *schemas.Frame) bool {
	return func(f *schemas.Frame) bool { return f.Start != nil && f.Start.Params["application_name"] == app }
}

// readSessions consumes the topic from the start until done reports true (or 60s).
func (g *gw) readSessions(t *testing.T, done func(map[string][]schemas.Frame) bool) map[string][]schemas.Frame {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.brokers...), kgo.ConsumeTopics(g.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	all := map[string][]schemas.Frame{}
	deadline := time.Now().Add(60 * time.Second)
	for !done(all) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions in %s after 60s: %d; the expected one is missing", g.topic, len(all))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			f, err := schemas.FrameCodec().Decode(r.Value)
			if err != nil {
				t.Fatalf("decode frame at offset %d: %v", r.Offset, err)
			}
			if string(r.Key) != f.SessionID {
				t.Fatalf("record key %q is not the session id %s", r.Key, f.SessionID)
			}
			all[f.SessionID] = append(all[f.SessionID], f)
		})
	}
	return all
}

// verifySession checks what a verifier would: seq from 0 without gaps, every
// chain link, the end's counts and its signature under the gateway's key.
func (g *gw) verifySession(t *testing.T, frames []schemas.Frame) {
	t.Helper()
	prev := schemas.ZeroHash
	for i := range frames {
		f := &frames[i]
		if f.Seq != int64(i) {
			t.Fatalf("frame %d has seq %d: gap or reorder", i, f.Seq)
		}
		if err := schemas.CheckLink(f, prev); err != nil {
			t.Fatal(err)
		}
		if f.Protocol != schemas.Postgres || f.GatewayID != "gw-test" {
			t.Fatalf("seq %d: protocol %s gateway %q", f.Seq, f.Protocol, f.GatewayID)
		}
		prev = f.Hash
	}
	end := frames[len(frames)-1]
	if end.Kind != schemas.KindSessionEnd || end.End == nil {
		t.Fatalf("last frame is %s, want session.end", end.Kind)
	}
	if end.End.LastSeq != end.Seq-1 || !bytes.Equal(end.End.FinalHash, frames[len(frames)-2].Hash) {
		t.Fatalf("session.end tip (last_seq %d) does not match the frames", end.End.LastSeq)
	}
	if err := schemas.VerifyEnd(g.pub, end.SessionID, end.End); err != nil {
		t.Fatal(err)
	}
}

// payloads concatenates the reassembled protocol messages of one direction.
func payloads(frames []schemas.Frame, dir schemas.Direction) []byte {
	var b bytes.Buffer
	for _, f := range frames {
		if f.Direction == dir && !f.IsLifecycle() {
			b.Write(f.Payload)
		}
	}
	return b.Bytes()
}

func kinds(frames []schemas.Frame, dir schemas.Direction) []string {
	var out []string
	for _, f := range frames {
		if f.Direction == dir && !f.IsLifecycle() && f.Fragment == 0 {
			out = append(out, f.Kind)
		}
	}
	return out
}

func pgErrCode(err error) string {
	var pe *pgconn.PgError
	for err != nil {
		if p, ok := err.(*pgconn.PgError); ok {
			pe = p
			break
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			break
		}
		err = u.Unwrap()
	}
	if pe == nil {
		return ""
	}
	return pe.Code
}

// teeConn records the plaintext bytes a client wrote and read.
type teeConn struct {
	net.Conn
	mu      sync.Mutex
	out, in bytes.Buffer
}

func (c *teeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

var _ io.ReadWriter = (*teeConn)(nil)

func (g *gw) scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// otherCA writes a self-signed certificate for 127.0.0.1 that signed nothing else.
func otherCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := dir + "/other-ca.crt"
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pgTool is the path of a PostgreSQL client program of the test installation.
func (g *gw) pgTool(name string) string {
	if g.pg.Bin != "" {
		if p := filepath.Join(g.pg.Bin, name); fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
