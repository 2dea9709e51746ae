package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/processors/runner"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/query/server"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

func init() { register(newDevCmd()) }

// devOptions are the flags of `tapline dev`. Ports default to fixed values so the
// printed commands stay valid across restarts; 0 picks a free port.
type devOptions struct {
	dataDir     string
	kafkaPort   int
	pgPort      int
	sshPort     int
	httpPort    int
	apiPort     int
	servicesEnv string
	groups      []string
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system in one process with embedded backends",
		Long: `Run gateway, processors, sink, query API and a dev OIDC issuer in one process, on
embedded backends: a Kafka-protocol broker (kfake) and chDB, both persisted under
--data-dir so recordings survive a restart. The code paths are the production ones.

Demo targets come from the test services file (integration/services.sh up postgres ssh
http writes it): a Postgres database "demo", an SSH host "demo-box" and an HTTPS service
"demo-web" (nginx), and the Kubernetes API server "demo-cluster" when the test cluster
is running. Without it the gateway still starts and the banner says how to add a target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", devissuer.DefaultDataDir(), "where the broker log, chDB tables and keys live (env "+devissuer.EnvDataDir+")")
	f.IntVar(&o.kafkaPort, "kafka-port", 19092, "embedded Kafka broker port (0: any free port)")
	f.IntVar(&o.pgPort, "pg-port", 15432, "gateway Postgres listener port")
	f.IntVar(&o.sshPort, "ssh-port", 12222, "gateway SSH listener port")
	f.IntVar(&o.httpPort, "http-port", 18443, "gateway HTTPS listener port")
	f.IntVar(&o.apiPort, "api-port", 18080, "query API port")
	f.StringVar(&o.servicesEnv, "services-env", defaultServicesEnv(), "KEY=VALUE file describing demo Postgres, sshd and nginx (written by integration/services.sh)")
	f.StringSliceVar(&o.groups, "groups", []string{"dev"}, "groups allowed to use the demo targets")
	return cmd
}

func defaultServicesEnv() string {
	if p := os.Getenv("TAPLINE_SERVICES_ENV"); p != "" {
		return p
	}
	return filepath.Join(".services", "env")
}

// devSystem is everything `tapline dev` runs; each part ends when ctx ends.
type devSystem struct {
	opts    devOptions
	log     *slog.Logger
	cluster *kfake.Cluster
	brokers []string
	issuer  *devissuer.Issuer
	store   clickhouse.Store
	gw      *gateway.Gateway
	procKey ed25519.PrivateKey // signs masked frames; trusted by the query API
	// apiLn is the query API's listener, bound at start so the banner shows the
	// real port when --api-port is 0; the first run of the query part takes it and
	// a restart binds apiAddr again.
	apiLn   net.Listener
	apiAddr string
	targets []devTarget
}

func runDev(ctx context.Context, o devOptions, out io.Writer) error {
	if clickhouse.Embedded.Open == nil {
		return errors.New("tapline dev needs chDB: build with -tags chdb and set CHDB_LIB_PATH to libchdb.so (make dev does both)")
	}
	if err := clickhouse.Embedded.Load(); err != nil {
		return fmt.Errorf("tapline dev: %w", err)
	}
	abs, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	o.dataDir = abs
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	s := &devSystem{opts: o, log: slog.Default()}
	defer s.close()
	if err := s.start(ctx); err != nil {
		return err
	}
	s.printBanner(out)
	return s.run(ctx)
}

func (s *devSystem) start(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"kafka", s.startKafka},
		{"issuer", s.startIssuer},
		{"store", s.openStore},
		{"gateway", s.newGateway},
		{"processor key", s.loadProcessorKey},
		{"query listener", s.listenAPI},
	}
	for _, st := range steps {
		s.log.Info("starting", "part", st.name)
		if err := st.fn(ctx); err != nil {
			return fmt.Errorf("dev %s: %w", st.name, err)
		}
	}
	return nil
}

// startKafka runs kfake with a data dir. Writes go to the page cache and are
// synced on segment roll and shutdown, as on a real Kafka broker with its
// defaults (acks=all means replicated, not fsynced): a crash of tapline dev
// loses nothing the kernel has. Per-batch fsync (kfake.SyncWrites) made every
// acknowledged produce cost ~1.8 ms on the development machine, which strict
// mode paid several times per statement (docs/performance.md).
func (s *devSystem) startKafka(context.Context) error {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(s.opts.kafkaPort),
		kfake.DataDir(filepath.Join(s.opts.dataDir, "kafka")),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3),
		kfake.SeedTopics(3, schemas.TopicFramesRaw, schemas.TopicFrames, schemas.TopicCommands,
			schemas.TopicSessions, schemas.TopicAudit, runner.DefaultStateTopic),
	)
	if err != nil {
		return fmt.Errorf("embedded broker on port %d: %w (is another tapline dev running? use --kafka-port)", s.opts.kafkaPort, err)
	}
	s.cluster = c
	s.brokers = c.ListenAddrs()
	return nil
}

func (s *devSystem) startIssuer(ctx context.Context) error {
	iss, err := devissuer.Open(s.opts.dataDir)
	if err != nil {
		return err
	}
	s.issuer = iss
	// Serve before the gateway and query API build their verifiers, so their
	// first discovery succeeds instead of backing off.
	errc := make(chan error, 1)
	go func() { errc <- iss.Serve(ctx, "") }()
	discovery := iss.URL() + "/.well-known/openid-configuration"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case err := <-errc:
			return err
		default:
		}
		if resp, err := http.Get(discovery); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("dev issuer not answering at %s", discovery)
}

func (s *devSystem) openStore(ctx context.Context) error {
	st, err := clickhouse.Embedded.Open(filepath.Join(s.opts.dataDir, "chdb"), "", clickhouse.Config{})
	if err != nil {
		return err
	}
	s.store = st
	return st.Migrate(ctx)
}

func (s *devSystem) newGateway(ctx context.Context) error {
	s.targets = loadDevTargets(s.opts.servicesEnv, s.opts.groups, s.log)
	b, err := yaml.Marshal(s.gatewayConfig())
	if err != nil {
		return err
	}
	// Only the demo targets' secrets: TAPLINE_* overrides in the caller's
	// environment (e.g. from the test services file) must not point dev elsewhere.
	env := func(k string) (string, bool) {
		for _, t := range s.targets {
			if t.secretEnv == k {
				return t.secret, true
			}
		}
		return "", false
	}
	cfg, err := gateway.Parse(b, env)
	if err != nil {
		return err
	}
	s.gw, err = gateway.New(ctx, cfg, s.log)
	return err
}

func (s *devSystem) gatewayConfig() map[string]any {
	targets := []any{}
	for _, t := range s.targets {
		targets = append(targets, t.config)
	}
	return map[string]any{
		"gateway_id": "dev",
		"data_dir":   s.opts.dataDir,
		"kafka":      map[string]any{"brokers": s.brokers, "mode": "strict"},
		"oidc":       map[string]any{"issuer": s.issuer.URL(), "audience": devissuer.GatewayAudience},
		"postgres":   map[string]any{"listen": hostPort(s.opts.pgPort)},
		"ssh":        map[string]any{"listen": hostPort(s.opts.sshPort)},
		"http":       map[string]any{"listen": hostPort(s.opts.httpPort)},
		"targets":    targets,
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// run serves every part until ctx ends, then shuts down in data-flow order: the
// gateway ends live sessions and flushes, the processors and the sink drain what
// is left, and only then do the store and broker close.
func (s *devSystem) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	pipeCtx, stopPipe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipe()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	sup := newSupervisor(s.log)
	// Each part is restarted with backoff when it fails; one that keeps failing
	// stops dev with an error naming it.
	goPart := func(name string, ctx context.Context, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sup.run(ctx, name, fn); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		}()
	}
	goPart("processors", pipeCtx, s.runProcessors)
	goPart("sink", pipeCtx, s.runSink)
	goPart("query", ctx, s.runQuery)
	gwDone := make(chan error, 1)
	go func() { gwDone <- s.gw.Serve(ctx) }()

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		s.log.Error("a part failed; shutting down", "err", first)
	case first = <-gwDone:
		gwDone <- first
	}
	cancel()
	s.log.Info("shutting down: ending sessions, then draining the pipeline")
	if err := <-gwDone; err != nil && first == nil {
		first = err
	}
	s.drain(30 * time.Second)
	stopPipe()
	wg.Wait()
	return first
}

func (s *devSystem) processorKeyPath() string {
	return filepath.Join(s.opts.dataDir, "processor-signing.key")
}

func (s *devSystem) loadProcessorKey(context.Context) error {
	k, err := keyfile.LoadOrCreate(s.processorKeyPath())
	s.procKey = k
	return err
}

func (s *devSystem) runProcessors(ctx context.Context) error {
	// The processors trust the dev gateway's key and sign what they mask with theirs.
	y := fmt.Sprintf("kafka:\n  transactional_id: tapline-dev-process\n  session_timeout: 6s\ntrusted_gateway_keys: [%x]\nsigning_key: %q\n",
		[]byte(s.gw.PublicKey()), s.processorKeyPath())
	cfg, err := runner.Parse([]byte(y), func(k string) (string, bool) {
		if k == "TAPLINE_KAFKA_BROKERS" {
			return strings.Join(s.brokers, ","), true
		}
		return "", false
	})
	if err != nil {
		return err
	}
	return runner.Run(ctx, cfg, s.log.With("part", "process"), prometheus.NewRegistry())
}

func (s *devSystem) runSink(ctx context.Context) error {
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{
		Brokers: s.brokers, BatchWait: 200 * time.Millisecond, SessionTimeout: 6 * time.Second,
	}, s.store, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

func (s *devSystem) runQuery(ctx context.Context) error {
	verifier, err := auth.NewVerifier(ctx, auth.Config{Issuer: s.issuer.URL(), Audience: devissuer.QueryAudience})
	if err != nil {
		return err
	}
	cfg := api.Config{FollowPoll: 500 * time.Millisecond, TrustedGatewayKeys: []ed25519.PublicKey{s.gw.PublicKey()},
		TrustedProcessorKeys: []ed25519.PublicKey{s.procKey.Public().(ed25519.PublicKey)}}
	cc := console.Config{ClientID: devissuer.ConsoleClient}
	h, err := server.WithConsole(ctx, cc, auth.Config{Issuer: s.issuer.URL()}, &cfg, func() http.Handler { return api.New(cfg, s.store, verifier) })
	if err != nil {
		return err
	}
	ln, err := s.takeAPIListener()
	if err != nil {
		return err
	}
	qc := &server.Config{Listen: s.apiAddr}
	return server.Serve(ctx, qc, ln, h, s.log.With("part", "query"))
}

func (s *devSystem) listenAPI(context.Context) error {
	ln, err := net.Listen("tcp", hostPort(s.opts.apiPort))
	if err != nil {
		return fmt.Errorf("query API: %w (is another tapline dev running? use --api-port)", err)
	}
	s.apiLn, s.apiAddr = ln, ln.Addr().String()
	return nil
}

// takeAPIListener hands the listener bound at start to the first run of the query
// part; a restarted part binds the same address again.
func (s *devSystem) takeAPIListener() (net.Listener, error) {
	if ln := s.apiLn; ln != nil {
		s.apiLn = nil
		return ln, nil
	}
	return net.Listen("tcp", s.apiAddr)
}

// drain waits until the processors and the sink have consumed everything the
// gateway wrote, so a clean shutdown leaves nothing only in Kafka. Both read
// transactional topics, where a commit marker takes an offset no consumer ever
// commits past, so "drained" is: at most one offset behind per partition, and no
// change for a second.
func (s *devSystem) drain(limit time.Duration) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(limit)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lags, err := adm.Lag(ctx, "tapline-process", "tapline-sink")
		cancel()
		total, settled := lagState(lags, err)
		if total != last {
			last, since = total, time.Now()
		}
		if settled && time.Since(since) >= time.Second {
			s.log.Info("pipeline drained")
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.log.Warn("pipeline not drained before shutdown; the rest is processed at the next start", "waited", limit)
}

// lagState sums the groups' lag and says whether every partition is within one
// offset (a trailing commit marker) of its end.
func lagState(lags kadm.DescribedGroupLags, err error) (int64, bool) {
	if err != nil {
		return -1, false
	}
	var total int64
	settled := true
	for _, g := range lags {
		if g.FetchErr != nil || g.DescribeErr != nil {
			return -1, false
		}
		for _, l := range g.Lag.Sorted() {
			total += l.Lag
			settled = settled && l.Err == nil && l.Lag <= 1
		}
	}
	return total, settled
}

func (s *devSystem) close() {
	if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// devTarget is a demo target found in the services file.
type devTarget struct {
	name              string
	config            map[string]any
	secretEnv, secret string
	// example is the banner's line showing a stock client on this target,
	// given the port its listener bound.
	example func(port int) string
	// listener is the gateway listener the target is reached through.
	listener string
}

func loadDevTargets(path string, groups []string, log *slog.Logger) []devTarget {
	env, err := readEnvFile(path)
	if err != nil {
		log.Info("no demo targets", "services_env", path, "reason", err)
		return nil
	}
	var out []devTarget
	if env["TAPLINE_PG_PORT"] != "" {
		out = append(out, devTarget{
			name: "demo", listener: "postgres",
			example: func(port int) string {
				return fmt.Sprintf("  psql:    PGPASSWORD=$TAPLINE_GATEWAY_TOKEN psql \"host=127.0.0.1 port=%d dbname=demo user=alice sslmode=verify-full\"", port)
			},
			secretEnv: "TAPLINE_DEV_DEMO_PG_PASSWORD", secret: env["TAPLINE_PG_GW_PASSWORD"],
			config: map[string]any{
				"name": "demo", "protocol": "postgres", "groups": groups,
				"address": net.JoinHostPort(env["TAPLINE_PG_HOST"], env["TAPLINE_PG_PORT"]),
				"postgres": map[string]any{"database": env["TAPLINE_PG_DB"], "user": env["TAPLINE_PG_GW_USER"],
					"password_env": "TAPLINE_DEV_DEMO_PG_PASSWORD", "tls": "disable"},
			},
		})
	}
	if env["TAPLINE_SSH_PORT"] != "" {
		out = append(out, devTarget{
			name: "demo-box", listener: "ssh",
			example: func(port int) string {
				return fmt.Sprintf("  ssh:     ssh -p %d %s+demo-box@127.0.0.1   (password: $TAPLINE_GATEWAY_TOKEN)", port, env["TAPLINE_SSH_USER"])
			},
			config: map[string]any{
				"name": "demo-box", "protocol": "ssh", "groups": groups,
				"address": net.JoinHostPort(env["TAPLINE_SSH_HOST"], env["TAPLINE_SSH_PORT"]),
				"ssh": map[string]any{"user": env["TAPLINE_SSH_USER"], "key_file": env["TAPLINE_SSH_KEY"],
					"known_hosts": env["TAPLINE_SSH_KNOWN_HOSTS"]},
			},
		})
	}
	if env["TAPLINE_NGINX_ADDR"] != "" {
		out = append(out, devTarget{
			name: "demo-web", listener: "http",
			example: func(port int) string {
				return fmt.Sprintf("  curl:    curl --cacert $PGSSLROOTCERT -H \"Authorization: Bearer $TAPLINE_GATEWAY_TOKEN\" https://127.0.0.1:%d/demo-web/hello.txt", port)
			},
			config: map[string]any{
				"name": "demo-web", "protocol": "http", "groups": groups,
				"address": env["TAPLINE_NGINX_ADDR"],
				"http":    map[string]any{"ca_file": env["TAPLINE_NGINX_CA"]},
			},
		})
	}
	if t, ok := devKubeTarget(env, groups, log); ok {
		out = append(out, t)
	}
	return out
}

// devKubeTarget is the test services' Kubernetes API server as "demo-cluster",
// when `make test` (or `integration/services.sh up kubernetes`) left one
// running: make dev does not start it, as building it takes minutes. Agents
// are impersonated with the group the test cluster's RBAC lets use pods.
func devKubeTarget(env map[string]string, groups []string, log *slog.Logger) (devTarget, bool) {
	server := strings.TrimPrefix(env["TAPLINE_KUBE_SERVER"], "https://")
	if server == "" || env["TAPLINE_KUBE_GATEWAY_TOKEN"] == "" {
		return devTarget{}, false
	}
	c, err := net.DialTimeout("tcp", server, 300*time.Millisecond)
	if err != nil {
		log.Info("no Kubernetes demo target: the test cluster is not running (integration/services.sh up kubernetes)", "server", server)
		return devTarget{}, false
	}
	c.Close()
	kubectl := env["TAPLINE_KUBECTL"]
	if kubectl == "" {
		kubectl = "kubectl"
	}
	kube := map[string]any{}
	if g := env["TAPLINE_KUBE_AGENT_GROUP"]; g != "" {
		kube["extra_groups"] = []string{g}
	}
	return devTarget{
		name: "demo-cluster", listener: "http",
		example: func(port int) string {
			return fmt.Sprintf("  kubectl: %s --server https://127.0.0.1:%d/demo-cluster --certificate-authority $PGSSLROOTCERT --token $TAPLINE_GATEWAY_TOKEN get pods", kubectl, port)
		},
		secretEnv: "TAPLINE_DEV_DEMO_KUBE_TOKEN", secret: env["TAPLINE_KUBE_GATEWAY_TOKEN"],
		config: map[string]any{
			"name": "demo-cluster", "protocol": "kubernetes", "groups": groups,
			"address": server,
			"http": map[string]any{"ca_file": env["TAPLINE_KUBE_CA"],
				"bearer": map[string]any{"env": "TAPLINE_DEV_DEMO_KUBE_TOKEN"}},
			"kubernetes": kube,
		},
	}, true
}

// readEnvFile parses KEY=VALUE lines, with optional single or double quotes.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if n := len(v); n >= 2 && (v[0] == '\'' || v[0] == '"') && v[n-1] == v[0] {
			v = v[1 : n-1]
		}
		out[strings.TrimPrefix(k, "export ")] = v
	}
	return out, sc.Err()
}

func (s *devSystem) printBanner(out io.Writer) {
	exe := clientBinary()
	dd := s.opts.dataDir
	groups := strings.Join(s.opts.groups, ",")
	api := "http://" + s.apiAddr
	fmt.Fprintf(out, "\ntapline dev is running (data in %s). Ctrl-C stops it cleanly.\n\n", dd)
	fmt.Fprintf(out, "  token:   export TAPLINE_GATEWAY_TOKEN=$(%s token --data-dir %s --sub alice --groups %s)\n", exe, dd, groups)
	fmt.Fprintf(out, "  ca:      export PGSSLROOTCERT=%s   (the gateway's certificate, for psql and curl; %s ca --data-dir %s prints it)\n", filepath.Join(dd, "postgres-tls.crt"), exe, dd)
	for _, t := range s.targets {
		fmt.Fprintln(out, t.example(boundPort(s.gw.Addr(t.listener))))
	}
	fmt.Fprintf(out, "  API token: export TAPLINE_TOKEN=$(%s token --for query --data-dir %s --sub alice --groups auditors)\n", exe, dd)
	if len(s.targets) == 0 {
		fmt.Fprintf(out, "  no demo targets: run `integration/services.sh up postgres ssh http` and restart, or pass --services-env\n")
	}
	fmt.Fprintf(out, "  console: %s/   (log in on the dev issuer's page: pick a subject and groups, e.g. auditors)\n", api)
	fmt.Fprintf(out, "  API:     %s/api/v1   (Authorization: Bearer $TAPLINE_TOKEN; the CLI reads TAPLINE_TOKEN)\n", api)
	fmt.Fprintf(out, "  list:    %s sessions --api %s\n", exe, api)
	fmt.Fprintf(out, "  replay:  %s replay --api %s SESSION_ID\n", exe, api)
	fmt.Fprintf(out, "  verify:  %s verify --api %s SESSION_ID\n\n", exe, api)
	fmt.Fprintf(out, "  kafka:   %s   gateway signing key: %x\n", strings.Join(s.brokers, ","), s.gw.PublicKey())
	fmt.Fprintf(out, "  processor signing key: %x\n\n", []byte(s.procKey.Public().(ed25519.PublicKey)))
}

// boundPort is the port a listener bound (the flag's value may be 0).
func boundPort(a net.Addr) int {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.Port
	}
	return 0
}

// clientBinary is what the banner tells people to run for token, sessions, replay
// and verify: a plain "tapline" beside this binary when there is one (static,
// smaller to copy elsewhere), else this binary, whose client commands run without
// CHDB_LIB_PATH.
func clientBinary() string {
	self, err := os.Executable()
	if err != nil {
		return "tapline"
	}
	plain := filepath.Join(filepath.Dir(self), "tapline")
	if st, err := os.Stat(plain); err == nil && !st.IsDir() {
		return plain
	}
	return self
}
