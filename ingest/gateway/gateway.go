package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tapline/tapline/metricsserver"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/edgelimit"
	"github.com/tapline/tapline/ingest/postgres"
	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/registry"
)

// ShutdownTimeout bounds how long the gateway waits, after SIGTERM, for sessions
// to be ended and their frames to reach Kafka.
const ShutdownTimeout = 30 * time.Second

// Gateway is a configured, listening gateway; Serve runs it.
type Gateway struct {
	cfg      *Config
	log      *slog.Logger
	reg      *prometheus.Registry
	verifier *auth.Verifier
	rec      *recorder.Recorder
	limits   *edgelimit.Limiter // shared by every edge
	servers  []server
	metrics  *metricsserver.Server // nil when metrics.listen is empty
}

// server is one protocol listener.
type server struct {
	name  string
	ln    net.Listener
	serve func(ctx context.Context, ln net.Listener) error
}

// New builds the verifier, the recorder and every listener in cfg, binding the
// listen addresses so that a port in use fails here, before anything is served.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (_ *Gateway, err error) {
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{cfg: cfg, log: log.With("gateway_id", cfg.GatewayID), reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			g.closeListeners()
			if g.rec != nil {
				_ = g.rec.Close(context.Background())
			}
		}
	}()
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if g.verifier, err = auth.NewVerifier(ctx, cfg.OIDC); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	limits := cfg.Limits
	limits.ExpiryGrace = cfg.OIDC.ClockSkew
	if limits.ExpiryGrace == 0 {
		limits.ExpiryGrace = auth.DefaultClockSkew
	}
	if g.limits, err = edgelimit.New(limits, g.reg); err != nil {
		return nil, err
	}
	kafkaOpts, err := cfg.Kafka.Security.Opts(cfg.lookupEnv)
	if err != nil {
		return nil, err
	}
	codec, err := frameCodec(ctx, cfg)
	if err != nil {
		return nil, err
	}
	g.rec, err = recorder.New(ctx, recorder.Config{
		Codec:            codec,
		Brokers:          cfg.Kafka.Brokers,
		Topic:            cfg.Kafka.Topic,
		Mode:             recorder.Mode(cfg.Kafka.Mode),
		GatewayID:        cfg.GatewayID,
		KeyFile:          cfg.SigningKey,
		FragmentBytes:    cfg.Kafka.FragmentBytes,
		ProduceTimeout:   cfg.Kafka.ProduceTimeout,
		MaxBufferedBytes: cfg.Kafka.MaxBufferedBytes,
		Linger:           linger(cfg.Kafka.Linger),
		Rounds:           rounds(cfg.Kafka.RoundsInFlight),
		Opts:             kafkaOpts,
		Logger:           log, // the recorder adds gateway_id itself
	}, g.reg)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if err := g.addPostgres(); err != nil {
		return nil, err
	}
	if err := g.addSSH(); err != nil {
		return nil, err
	}
	if err := g.addHTTP(); err != nil {
		return nil, err
	}
	if cfg.Metrics.Listen != "" {
		if g.metrics, err = metricsserver.Listen(cfg.Metrics.Listen, g.reg, g.ready, g.metricsOptions()...); err != nil {
			return nil, err
		}
	}
	if len(g.servers) == 0 {
		return nil, errors.New("no listener configured (add a postgres:, ssh: or http: section)")
	}
	return g, nil
}

func (g *Gateway) addPostgres() error {
	l := g.cfg.Postgres
	if l == nil {
		return nil
	}
	tlsCfg, err := listenerTLS(l.TLSCert, l.TLSKey, g.cfg.DataDir, l.Listen, g.log)
	if err != nil {
		return err
	}
	targets, err := g.cfg.postgresTargets()
	if err != nil {
		return err
	}
	srv, err := postgres.New(postgres.Config{
		TLS:             tlsCfg,
		AllowPlaintext:  l.AllowPlaintext,
		MaxMessageBytes: l.MaxMessageBytes,
		Targets:         targets,
		Verifier:        g.verifier,
		Recorder:        postgres.RecorderFor(g.rec),
		Logger:          g.log,
		Registerer:      g.reg,
		Limits:          g.limits,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return fmt.Errorf("postgres.listen: %w", err)
	}
	g.servers = append(g.servers, server{name: "postgres", ln: ln, serve: srv.Serve})
	return nil
}

// postgresTargets turns the postgres targets into the proxy's form.
func (c *Config) postgresTargets() ([]postgres.Target, error) {
	var out []postgres.Target
	for i, t := range c.Targets {
		if t.Protocol != "postgres" {
			continue
		}
		pg := t.Postgres
		pt := postgres.Target{
			Name: t.Name, Address: t.Address, Groups: t.Groups,
			Database: pg.Database, User: pg.User, TLS: postgres.TLSMode(pg.TLS),
			Password: c.passwordFunc(pg), AllowMD5: pg.AllowMD5, AllowCleartext: pg.AllowCleartext,
		}
		if pg.CAFile != "" {
			pool, err := loadCAPool(pg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("targets[%d].postgres.ca_file: %w", i, err)
			}
			pt.RootCAs = pool
		}
		out = append(out, pt)
	}
	return out, nil
}

// passwordFunc: a literal or env value is fixed at start; a file is read per
// connection so that a rotated, mounted secret applies without a restart.
func (c *Config) passwordFunc(pg *PostgresTarget) func() (string, error) {
	switch {
	case pg.Password != "":
		pw := pg.Password
		return func() (string, error) { return pw, nil }
	case pg.PasswordEnv != "":
		pw, _ := c.lookupEnv(pg.PasswordEnv)
		return func() (string, error) { return pw, nil }
	default:
		path := pg.PasswordFile
		return func() (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}
}

func (c *Config) lookupEnv(name string) (string, bool) {
	if c.env != nil {
		return c.env(name)
	}
	return os.LookupEnv(name)
}

// Addr returns the bound address of a listener ("postgres", "ssh", "http", "metrics"), or nil.
func (g *Gateway) Addr(name string) net.Addr {
	if name == "metrics" && g.metrics != nil {
		return g.metrics.Addr()
	}
	for _, s := range g.servers {
		if s.name == name {
			return s.ln.Addr()
		}
	}
	return nil
}

// PublicKey is the key session ends are signed with.
func (g *Gateway) PublicKey() []byte { return g.rec.PublicKey() }

func (g *Gateway) closeListeners() {
	for _, s := range g.servers {
		s.ln.Close()
	}
	if g.metrics != nil {
		g.metrics.Close()
	}
}

// Serve runs every listener until ctx is done or one fails. On the way out live
// sessions are ended with reason "gateway shutdown" and the recorder is flushed.
func (g *Gateway) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.rec.Ready(ctx); err != nil {
		g.log.Warn("Kafka not ready; connections are refused until it is", "err", err)
	}
	if g.metrics != nil {
		g.metrics.Start(g.log)
	}
	errc := make(chan error, len(g.servers))
	for _, s := range g.servers {
		go func() {
			err := s.serve(ctx, s.ln)
			if err != nil {
				err = fmt.Errorf("%s: %w", s.name, err)
			}
			errc <- err
		}()
	}
	var first error
	for range g.servers {
		if err := <-errc; err != nil && first == nil {
			first = err
			g.log.Error("listener failed; shutting down", "err", err)
		}
		cancel() // one listener ending ends them all
	}
	g.log.Info("listeners stopped; flushing recordings")
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer stop()
	if err := g.rec.Close(shutdownCtx); err != nil {
		g.log.Error("recorder did not flush everything", "err", err)
		first = errors.Join(first, err)
	}
	if g.metrics != nil {
		_ = g.metrics.Close()
	}
	g.log.Info("gateway stopped")
	return first
}

// ready is /readyz: Kafka takes frames and the identity provider's keys are known.
func (g *Gateway) ready(ctx context.Context) error {
	return errors.Join(g.rec.Ready(ctx), g.verifier.Ready(ctx))
}

// metricsOptions are the extra handlers of the metrics listener.
func (g *Gateway) metricsOptions() []metricsserver.Option {
	if g.cfg.Metrics.Pprof {
		return []metricsserver.Option{metricsserver.Pprof()}
	}
	return nil
}

// httpHandler is what the metrics listener serves.
func (g *Gateway) httpHandler() http.Handler {
	return metricsserver.Handler(g.reg, g.ready, g.metricsOptions()...)
}

// linger maps kafka.linger to the recorder's: absent is its default, 0 is none.
// rounds maps kafka.rounds_in_flight to recorder.Config.Rounds: absent is
// the default, 0 no limit.
func rounds(r *int) int {
	switch {
	case r == nil:
		return 0
	case *r == 0:
		return -1
	}
	return *r
}

func linger(l *time.Duration) time.Duration {
	switch {
	case l == nil:
		return 0
	case *l == 0:
		return -1
	}
	return *l
}

// Run is New then Serve.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	g, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return g.Serve(ctx)
}

// frameCodec is the raw topic's framing: the schema registry's id when one is
// configured (registered now, so a refused schema stops the start), else nil.
func frameCodec(ctx context.Context, cfg *Config) (*schemas.Codec[schemas.Frame], error) {
	if len(cfg.SchemaRegistry.URLs) == 0 {
		return nil, nil
	}
	reg, err := registry.Open(cfg.SchemaRegistry, cfg.lookupEnv)
	if err != nil {
		return nil, err
	}
	topic := cfg.Kafka.Topic
	if topic == "" {
		topic = schemas.TopicFramesRaw
	}
	c, err := registry.Codec(ctx, reg, topic, schemas.FrameCodec())
	if err != nil {
		return nil, fmt.Errorf("schema_registry: %w", err)
	}
	return c, nil
}
