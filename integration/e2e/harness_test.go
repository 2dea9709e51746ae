//go:build chdb

package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/processors/runner"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/chdb"
)

// Target names in the gateway's configuration, and the groups they admit.
const (
	pgTarget   = "appdb"
	sshTarget  = "box"
	httpTarget = "web"
	pgGroup    = "dba"
	sshGroup   = "ops"
	httpGroup  = "dev"
	auditors   = api.DefaultAuditorsGroup
)

// pipelineWait bounds how long a finished session may take to reach the API.
const pipelineWait = 60 * time.Second

// topics are this test binary's own topics on the shared broker.
type topics struct {
	Raw, Frames, Commands, Sessions, Audit, AuditOCSF, State, DeadLetter string
}

func (t topics) all() []string {
	return []string{t.Raw, t.Frames, t.Commands, t.Sessions, t.Audit, t.AuditOCSF, t.State, t.DeadLetter}
}

// harness is one running tapline: gateway → Kafka → processors → sink → chDB →
// query API, all in this process as `tapline dev` wires them, on the real services.
// Tests share it and keep apart by their own subjects and session ids.
type harness struct {
	prefix  string
	brokers []string
	topics  topics
	groups  []string // consumer groups, deleted at the end
	dir     string
	logPath string
	logOut  io.Writer

	pg     testenv.PG
	target testenv.SSHTarget

	iss        *devissuer.Issuer
	gw         *gateway.Gateway
	pgAddr     string
	sshAddr    string
	httpAddr   string   // the gateway's HTTP edge
	gwCA       string   // its certificate, for HTTP clients
	web        *httpApp // the HTTP target
	sshHostKey ssh.PublicKey
	gwKey      ed25519.PublicKey

	conn  clickhouse.Conn // the store's own connection, for direct SQL (tampering, scans)
	store clickhouse.Store
	api   *httptest.Server

	stop func() // ends everything, in data-flow order
}

var (
	harnessOnce sync.Once
	theHarness  *harness
	harnessErr  error
)

// TestMain stops the shared pipeline and closes chDB before the process exits
// (an open chDB session crashes the process on exit under the race detector).
func TestMain(m *testing.M) {
	code := m.Run()
	if theHarness != nil {
		theHarness.stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: logs of the pipeline kept in %s\n", theHarness.logPath)
		} else {
			os.RemoveAll(theHarness.dir)
		}
	}
	os.Exit(code)
}

// pipeline returns the shared running system, starting it on first use. The test
// is skipped (or failed under CI) when a service is missing.
func pipeline(t *testing.T) *harness {
	t.Helper()
	brokers := testenv.Kafka(t)
	pg := testenv.Postgres(t)
	target := testenv.SSH(t)
	testenv.CHDBLib(t)
	if pg.Bin == "" || pg.SSLCert == "" {
		t.Fatalf("testenv: TAPLINE_PG_BIN and TAPLINE_PG_SSL_CERT are needed (run `%s`)", testenv.Hint)
	}
	harnessOnce.Do(func() {
		theHarness, harnessErr = start(brokers, pg, target)
	})
	if harnessErr != nil {
		t.Fatalf("starting the pipeline: %v", harnessErr)
	}
	h := theHarness
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pipeline log (last lines of %s):\n%s", h.logPath, tailFile(h.logPath, 60))
		}
	})
	return h
}

func start(brokers []string, pg testenv.PG, target testenv.SSHTarget) (_ *harness, err error) {
	dir, err := os.MkdirTemp("", "tapline-e2e-")
	if err != nil {
		return nil, err
	}
	prefix := "e2e-" + randHex(4)
	h := &harness{
		prefix: prefix, brokers: brokers, dir: dir, pg: pg, target: target,
		logPath: filepath.Join(dir, "pipeline.log"),
		topics: topics{Raw: prefix + ".frames.raw", Frames: prefix + ".frames", Commands: prefix + ".commands",
			Sessions: prefix + ".sessions", Audit: prefix + ".audit", AuditOCSF: prefix + ".audit.ocsf", State: prefix + ".state", DeadLetter: prefix + ".deadletter"},
		groups: []string{prefix + "-process", prefix + "-sink"},
	}
	logFile, err := os.Create(h.logPath)
	if err != nil {
		return nil, err
	}
	h.logOut = logFile
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var stops []func()
	var stopOnce sync.Once
	h.stop = func() {
		stopOnce.Do(func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
			logFile.Close()
		})
	}
	defer func() {
		if err != nil {
			h.stop()
		}
	}()
	stops = append(stops, func() { h.deleteTopics() })
	if err := h.createRawTopic(); err != nil {
		return nil, err
	}
	if err := h.startIssuer(&stops); err != nil {
		return nil, err
	}
	if err := h.openStore(&stops); err != nil {
		return nil, err
	}
	// The pipeline stops after the gateway (stops run in reverse), so that
	// sessions the gateway ends at shutdown are still processed.
	pipeCtx, stopPipe := context.WithCancel(context.Background())
	var pipeWG sync.WaitGroup
	stops = append(stops, func() { stopPipe(); pipeWG.Wait() })
	if err := h.startGateway(log, &stops); err != nil {
		return nil, err
	}
	pcfg, err := h.processorConfig()
	if err != nil {
		return nil, err
	}
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{
		Brokers: brokers, Group: prefix + "-sink", SessionTimeout: 6 * time.Second, BatchWait: 100 * time.Millisecond,
		FramesTopic: h.topics.Frames, CommandsTopic: h.topics.Commands, SessionsTopic: h.topics.Sessions,
	}, h.store, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	pipeWG.Add(2)
	go func() {
		defer pipeWG.Done()
		if err := runner.Run(pipeCtx, pcfg, log.With("part", "process"), prometheus.NewRegistry()); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("processors stopped", "err", err)
		}
	}()
	go func() {
		defer pipeWG.Done()
		if err := w.Run(pipeCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("sink stopped", "err", err)
		}
	}()
	return h, h.startAPI(log, &stops)
}

func (h *harness) admin() (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// createRawTopic creates the raw topic with three partitions; the processors
// create the others with the same count.
func (h *harness) createRawTopic() error {
	adm, done, err := h.admin()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, 3, 1, nil, h.topics.Raw)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", h.topics.Raw, err)
	}
	return nil
}

// deleteTopics removes this binary's topics and groups from the shared broker.
func (h *harness) deleteTopics() {
	adm, done, err := h.admin()
	if err != nil {
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = adm.DeleteGroups(ctx, h.groups...)
	_, _ = adm.DeleteTopics(ctx, h.topics.all()...)
}

func (h *harness) startIssuer(stops *[]func()) error {
	iss, err := devissuer.Open(h.dir)
	if err != nil {
		return err
	}
	h.iss = iss
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Serve(ctx, "") }()
	*stops = append(*stops, func() { cancel(); <-done })
	discovery := iss.URL() + "/.well-known/openid-configuration"
	return poll(10*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("dev issuer: %w", err)
		default:
		}
		resp, err := http.Get(discovery)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// openStore opens the one chDB session this process may have and keeps its
// connection for the tests' direct SQL; sink and API share the store over it.
func (h *harness) openStore(stops *[]func()) error {
	conn, err := chdb.Dial(filepath.Join(h.dir, "chdb"))
	if err != nil {
		return err
	}
	store, err := clickhouse.NewStore(conn, clickhouse.Config{})
	if err != nil {
		conn.Close()
		return err
	}
	h.conn, h.store = conn, store
	*stops = append(*stops, func() { store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return store.Migrate(ctx)
}

func (h *harness) startGateway(log *slog.Logger, stops *[]func()) error {
	web, err := startHTTPApp(h.dir)
	if err != nil {
		return err
	}
	h.web = web
	*stops = append(*stops, web.Close)
	cfg := map[string]any{
		"gateway_id": "e2e-gw",
		"data_dir":   filepath.Join(h.dir, "gateway"),
		"kafka":      map[string]any{"brokers": h.brokers, "topic": h.topics.Raw, "mode": "strict"},
		"oidc":       map[string]any{"issuer": h.iss.URL(), "audience": devissuer.DefaultAudience},
		"postgres":   map[string]any{"listen": "127.0.0.1:0"},
		"ssh":        map[string]any{"listen": "127.0.0.1:0"},
		"http":       map[string]any{"listen": "127.0.0.1:0"},
		"targets": []any{
			map[string]any{"name": pgTarget, "protocol": "postgres", "address": h.pg.Addr(), "groups": []string{pgGroup},
				"postgres": map[string]any{"database": h.pg.DB, "user": h.pg.GWUser, "password_env": "E2E_PG_PASSWORD",
					"tls": "verify-full", "ca_file": h.pg.SSLCert}},
			map[string]any{"name": sshTarget, "protocol": "ssh", "address": h.target.Addr(), "groups": []string{sshGroup},
				"ssh": map[string]any{"user": h.target.User, "key_file": h.target.KeyPath, "known_hosts": h.target.KnownHostsPath}},
			map[string]any{"name": httpTarget, "protocol": "http", "address": h.web.addr, "groups": []string{httpGroup},
				"http": map[string]any{"ca_file": h.web.caFile, "bearer": map[string]any{"value": "web-target-secret"}}},
		},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	// Only the target password: TAPLINE_* variables of the caller must not
	// reconfigure the gateway under test.
	parsed, err := gateway.Parse(b, func(k string) (string, bool) {
		if k == "E2E_PG_PASSWORD" {
			return h.pg.GWPassword, true
		}
		return "", false
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, parsed, log.With("part", "gateway"))
	if err != nil {
		cancel()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	*stops = append(*stops, func() {
		cancel()
		if err := <-done; err != nil {
			log.Error("gateway stopped", "err", err)
		}
	})
	h.gw, h.gwKey = gw, ed25519.PublicKey(gw.PublicKey())
	h.pgAddr, h.sshAddr, h.httpAddr = gw.Addr("postgres").String(), gw.Addr("ssh").String(), gw.Addr("http").String()
	h.gwCA = filepath.Join(h.dir, "gateway", "postgres-tls.crt")
	key, err := os.ReadFile(filepath.Join(h.dir, "gateway", "ssh_host_ed25519_key"))
	if err != nil {
		return fmt.Errorf("gateway ssh host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("gateway ssh host key: %w", err)
	}
	h.sshHostKey = signer.PublicKey()
	return nil
}

// processorKeyPath is the processors' signing key, created on first use; the query
// API trusts it, as a deployment's does.
func (h *harness) processorKeyPath() string { return filepath.Join(h.dir, "processor.key") }

func (h *harness) processorConfig() (*runner.Config, error) {
	t := h.topics
	y := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s-process
  transactional_id: %s-txn
  session_timeout: 6s
topics: {raw: %s, frames: %s, commands: %s, sessions: %s, audit: %s, audit_ocsf: %s, state: %s, dead_letter: %s}
trusted_gateway_keys: [%s]
signing_key: %s
sessions: {hold_for: 60s}
masking:
  defaults:
    tables:
      e2e_items: [id, name, price]
      e2e_customers: [id, contact, card_no]
      public.e2e_positional: [id, name, password, api_key, note]
`, strings.Join(h.brokers, ", "), h.prefix, h.prefix, t.Raw, t.Frames, t.Commands, t.Sessions, t.Audit, t.AuditOCSF, t.State,
		t.DeadLetter, hex.EncodeToString(h.gwKey), h.processorKeyPath())
	return runner.Parse([]byte(y), func(string) (string, bool) { return "", false })
}

func (h *harness) startAPI(log *slog.Logger, stops *[]func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	verifier, err := auth.NewVerifier(ctx, auth.Config{Issuer: h.iss.URL(), Audience: devissuer.DefaultAudience})
	if err != nil {
		return err
	}
	// The access trail (one Info record per request) would drown the pipeline's log.
	quiet := slog.New(slog.NewTextHandler(h.logOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	procKey, err := keyfile.LoadOrCreate(h.processorKeyPath())
	if err != nil {
		return err
	}
	cfg := api.Config{TrustedGatewayKeys: []ed25519.PublicKey{h.gwKey},
		TrustedProcessorKeys: []ed25519.PublicKey{procKey.Public().(ed25519.PublicKey)}, Logger: quiet.With("part", "query")}
	// The web console around the API, logging in at the dev issuer as `tapline dev` does.
	cons, err := console.New(ctx, console.Config{ClientID: devissuer.ConsoleClient}, auth.Config{Issuer: h.iss.URL()})
	if err != nil {
		return err
	}
	cfg.SessionCookie, cfg.SessionVerifier = console.CookieName, cons.Verifier()
	h.api = httptest.NewServer(cons.Handler(api.New(cfg, h.store, verifier)))
	*stops = append(*stops, h.api.Close)
	return nil
}

// token mints a token for sub in groups, with a recognisable email.
func (h *harness) token(t *testing.T, sub string, groups ...string) string {
	t.Helper()
	tok, err := h.iss.Mint(sub, groups, time.Hour, devissuer.WithEmail(sub+"@e2e.example.net"), devissuer.WithName("E2E "+sub))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// poll calls fn until it returns nil or limit passes, and returns its last error.
func poll(limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
