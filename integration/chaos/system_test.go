package chaos

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/sinks/clickhouse"
)

const (
	pgTarget  = "appdb"
	sshTarget = "box"
	groupName = "chaos"
	auditors  = "auditors"
)

// system is every tapline role of one campaign run, each as its own process.
type system struct {
	t       testing.TB
	run     string // unique id: topic prefix, subject prefix, database names
	dir     string
	bin     string
	cl      *cluster
	pg      testenv.PG
	target  testenv.SSHTarget
	ch      testenv.CH
	iss     *devissuer.Issuer
	proxy   *storeProxy
	gwKeys  []string // hex public keys of the gateways
	procKey string   // the processors' signing key file (masked frames)
	procPub string   // its public key, hex, trusted by the query API
	db      string   // ClickHouse database of the pipeline under test
	refDB   string   // ClickHouse database of the reference replay
	idle    time.Duration
	parts   int
	sshDir  string // where the target's commands leave their markers
	apiPort int

	gateways   []*proc
	pgPorts    []int
	sshPorts   []int
	processors []*proc
	sinks      []*proc
	query      *proc
	extraMu    sync.Mutex
	extra      []*proc // instances added for a rebalance, and the reference replay
}

func (s *system) topic(name string) string { return s.run + "." + name }

func (s *system) procs() []*proc {
	all := append([]*proc{}, s.gateways...)
	all = append(all, s.processors...)
	all = append(all, s.sinks...)
	s.extraMu.Lock()
	all = append(all, s.extra...)
	s.extraMu.Unlock()
	if s.query != nil {
		all = append(all, s.query)
	}
	return all
}

// startSystem starts every role in dir (made by newRunDir) with the binary bin.
func startSystem(t testing.TB, cl *cluster, dir, bin string, idle time.Duration, parts int) *system {
	t.Helper()
	s := &system{t: t, cl: cl, idle: idle, parts: parts, pg: testenv.Postgres(t), target: testenv.SSH(t), ch: testenv.ClickHouse(t)}
	s.run = "chaos" + randHex(4)
	s.db, s.refDB = strings.ReplaceAll(s.run, "-", "_"), strings.ReplaceAll(s.run, "-", "_")+"_ref"
	s.dir = dir
	s.sshDir = filepath.Join(os.TempDir(), s.run)
	if err := os.MkdirAll(s.sshDir, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(s.sshDir, 0o1777)
	t.Cleanup(func() { os.RemoveAll(s.sshDir) })
	s.bin = bin
	var err error
	s.startIssuer()
	if s.proxy, err = newStoreProxy(s.ch.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range s.procs() {
			p.kill()
		}
		s.proxy.close()
	})
	s.createRaw()
	s.processorKey()
	for i := 1; i <= 2; i++ {
		s.addGateway(i, "strict")
	}
	s.addGateway(3, "buffered")
	for i := 1; i <= 2; i++ {
		s.processors = append(s.processors, s.newProcessor(strconv.Itoa(i), "", s.idle))
	}
	for i := 1; i <= 2; i++ {
		s.sinks = append(s.sinks, s.newSink(strconv.Itoa(i), "", s.db, s.proxy.addr()))
	}
	for _, p := range s.procs() {
		p.start(t)
	}
	// The query role refuses a store the sinks have not migrated yet.
	s.waitReady()
	s.startQuery()
	s.query.start(t)
	s.waitQuery()
	return s
}

// newRunDir is the directory of a run's configs, keys and logs. Kept when the
// test fails: the roles' logs are what explains a failure.
func newRunDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "tapline-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

// createRaw creates the raw topic with the cluster's defaults: replication
// factor 3, min.insync.replicas 2. The processors create the others alike.
func (s *system) createRaw() {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cl.brokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	waitFor(s.t, time.Minute, "raw topic", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, int32(s.parts), 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, s.topic("frames.raw"))
		if err == nil && resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			err = resp.Err
		}
		return err
	})
	// Topics go even when the test failed (the roles' logs are kept): left on
	// the cluster they would slow every later broker restart.
	s.t.Cleanup(func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.cl.brokers...))
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		adm := kadm.NewClient(cl)
		_, _ = adm.DeleteGroups(ctx, s.run+"-process", s.run+"-sink", s.run+"-refprocess", s.run+"-refsink")
		_ = testenv.DeleteTopicsWithPrefix(ctx, adm, s.run+".")
	})
}

// topics are the run's topics the pipeline under test uses.
func (s *system) topics() []string {
	var out []string
	for _, n := range []string{"frames.raw", "frames", "commands", "sessions", "audit", "state"} {
		out = append(out, s.topic(n))
	}
	return out
}

func (s *system) startIssuer() {
	iss, err := devissuer.Open(filepath.Join(s.dir, "issuer"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.iss = iss
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Serve(ctx, "") }()
	s.t.Cleanup(func() { cancel(); <-done })
	waitFor(s.t, 30*time.Second, "dev issuer", func() error {
		r, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
		if err != nil {
			return err
		}
		return r.Body.Close()
	})
}

// token mints a token for one agent of the campaign.
func (s *system) token(sub string, groups ...string) string {
	tok, err := s.iss.Mint(sub, groups, 2*time.Hour, devissuer.WithEmail(sub+"@chaos.example.net"))
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

func (s *system) writeConfig(name string, cfg any) string {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

func (s *system) newProc(name, role string, args ...string) *proc {
	return &proc{name: name, role: role, args: append([]string{s.bin}, args...),
		env: roleEnv("CHAOS_PG_PASSWORD=" + s.pg.GWPassword), logf: filepath.Join(s.dir, name+".log")}
}

// processorKey creates the key every processor instance signs masked frames
// with, as a deployment shares one per processor group; the API trusts it.
func (s *system) processorKey() {
	s.procKey = filepath.Join(s.dir, "processor.key")
	key, err := keyfile.LoadOrCreate(s.procKey)
	if err != nil {
		s.t.Fatal(err)
	}
	s.procPub = hex.EncodeToString(key.Public().(ed25519.PublicKey))
}

// bufferedGateway: gateway 3 runs in buffered mode; the others are strict.
const bufferedGateway = 2

func (s *system) addGateway(i int, mode string) {
	name := "gateway-" + strconv.Itoa(i)
	keyPath := filepath.Join(s.dir, name+".key")
	key, err := keyfile.LoadOrCreate(keyPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.gwKeys = append(s.gwKeys, hex.EncodeToString(key.Public().(ed25519.PublicKey)))
	pgPort, sshPort := testenv.FreePort(s.t), testenv.FreePort(s.t)
	cfg := map[string]any{
		"gateway_id":  s.run + "-gw" + strconv.Itoa(i),
		"data_dir":    filepath.Join(s.dir, name),
		"signing_key": keyPath,
		"kafka":       map[string]any{"brokers": s.cl.brokers, "topic": s.topic("frames.raw"), "mode": mode, "produce_timeout": "10s"},
		"oidc":        map[string]any{"issuer": s.iss.URL(), "audience": devissuer.DefaultAudience},
		"metrics":     map[string]any{"listen": ""},
		"postgres":    map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(pgPort)},
		"ssh":         map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(sshPort)},
		"targets": []any{
			map[string]any{"name": pgTarget, "protocol": "postgres", "address": s.pg.Addr(), "groups": []string{groupName},
				"postgres": map[string]any{"database": s.pg.DB, "user": s.pg.GWUser, "password_env": "CHAOS_PG_PASSWORD",
					"tls": "verify-full", "ca_file": s.pg.SSLCert}},
			map[string]any{"name": sshTarget, "protocol": "ssh", "address": s.target.Addr(), "groups": []string{groupName},
				"ssh": map[string]any{"user": s.target.User, "key_file": s.target.KeyPath, "known_hosts": s.target.KnownHostsPath}},
		},
	}
	s.gateways = append(s.gateways, s.newProc(name, "gateway", "gateway", "--config", s.writeConfig(name, cfg)))
	s.pgPorts = append(s.pgPorts, pgPort)
	s.sshPorts = append(s.sshPorts, sshPort)
}

// newProcessor is one processor instance. prefix "" is the pipeline under
// test; "ref" is the reference replay with its own group and output topics.
func (s *system) newProcessor(id, prefix string, idle time.Duration) *proc {
	name := "process-" + prefix + id
	out := func(t string) string { return s.topic(prefix + t) }
	cfg := map[string]any{
		"kafka": map[string]any{"brokers": s.cl.brokers, "group": s.run + "-" + prefix + "process",
			"transactional_id": s.run + "-" + prefix + "process-" + id, "session_timeout": "10s"},
		"topics": map[string]any{"raw": s.topic("frames.raw"), "frames": out("frames"), "commands": out("commands"),
			"sessions": out("sessions"), "audit": out("audit"), "state": out("state")},
		"partitions":           s.parts,
		"trusted_gateway_keys": s.gwKeys,
		"signing_key":          s.procKey,
		"sessions":             map[string]any{"idle_timeout": idle.String()},
		"metrics":              map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(s.t))},
	}
	return s.newProc(name, "process", "process", "--config", s.writeConfig(name, cfg))
}

func (s *system) newSink(id, prefix, db, addr string) *proc {
	name := "sink-" + prefix + id
	out := func(t string) string { return s.topic(prefix + t) }
	cfg := map[string]any{
		"kafka": map[string]any{"brokers": s.cl.brokers, "group": s.run + "-" + prefix + "sink", "session_timeout": "10s",
			"batch_wait": "200ms", "frames_topic": out("frames"), "commands_topic": out("commands"), "sessions_topic": out("sessions")},
		"clickhouse": map[string]any{"addr": []string{addr}, "database": db, "username": "default", "schema": "legacy"},
		"metrics":    map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(s.t))},
	}
	return s.newProc(name, "sink", "sink", "--config", s.writeConfig(name, cfg))
}

func (s *system) startQuery() {
	s.apiPort = testenv.FreePort(s.t)
	cfg := map[string]any{
		"listen":                 "127.0.0.1:" + strconv.Itoa(s.apiPort),
		"oidc":                   map[string]any{"issuer": s.iss.URL(), "audience": devissuer.DefaultAudience},
		"auditors_group":         auditors,
		"trusted_gateway_keys":   s.gwKeys,
		"trusted_processor_keys": []string{s.procPub},
		"clickhouse":             map[string]any{"addr": []string{s.ch.Addr}, "database": s.db, "username": "default", "schema": "legacy"},
	}
	s.query = s.newProc("query", "query", "query", "--config", s.writeConfig("query", cfg))
}

func (s *system) apiURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.apiPort) }

// waitReady waits until the gateways accept connections and the sinks have
// applied every migration.
func (s *system) waitReady() {
	for i := range s.gateways {
		s.waitGateway(i)
	}
	_, ms, err := clickhouse.Migrations(clickhouse.SchemaLegacy)
	if err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 3*time.Minute, "store migrated", func() error {
		n, err := s.chCount("SELECT uniqExact(version) FROM " + s.db + ".schema_migrations")
		if err == nil && n < len(ms) {
			err = fmt.Errorf("%d of %d migrations applied", n, len(ms))
		}
		return err
	})
}

func (s *system) waitQuery() {
	waitFor(s.t, 3*time.Minute, "query API", func() error {
		r, err := http.Get(s.apiURL() + "/healthz")
		if err != nil {
			return err
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			return fmt.Errorf("healthz %d", r.StatusCode)
		}
		return nil
	})
}

func (s *system) waitGateway(i int) {
	if err := s.gatewayUp(i); err != nil {
		s.t.Fatal(err)
	}
}

// gatewayUp waits until gateway i accepts connections; an error, not a
// Fatal, so that the fault goroutine can report it.
func (s *system) gatewayUp(i int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := s.dialGateway(i)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after 2m: %v", s.gateways[i].name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *system) dialGateway(i int) error {
	for _, p := range []int{s.pgPorts[i], s.sshPorts[i]} {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), 5*time.Second)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// waitFor polls fn until it succeeds; the test fails after limit.
func waitFor(t testing.TB, limit time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
