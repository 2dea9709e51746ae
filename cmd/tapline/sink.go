package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/schemas/registry"
	"github.com/tapline/tapline/sinks/clickhouse"
)

func init() { register(newSinkCmd()) }

func loadSinkConfig(path string) (*clickhouse.SinkFile, error) {
	cfg := &clickhouse.SinkFile{}
	if err := loadConfig(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newSinkCmd() *cobra.Command {
	var configPath, brokers, addr, chdbPath, group, metricsListen, logLevel string
	cmd := &cobra.Command{
		Use:   "sink [--config FILE]",
		Short: "Write the processed topics (frames, commands, sessions) to ClickHouse",
		Long: `Run the sink: a Kafka consumer group on tapline.frames, tapline.commands and
tapline.sessions (read_committed) that writes batches to ClickHouse and commits offsets
only after ClickHouse acknowledged them. It applies the schema migrations, retention
TTLs and storage policy at start. While ClickHouse is down it retries the batch in
hand with backoff and stops reading, so the backlog stays in Kafka.

The store is a ClickHouse server (clickhouse.addr) or, in binaries built with
-tags chdb, embedded chDB (clickhouse.chdb_path; CHDB_LIB_PATH names libchdb.so).
Flags override the file. See docs/storage.md.`,
		Example: `  tapline sink --config /etc/tapline/sink.yaml
  tapline sink --brokers 127.0.0.1:9092 --clickhouse 127.0.0.1:9000
  CHDB_LIB_PATH=/opt/chdb/libchdb.so tapline sink --brokers 127.0.0.1:9092 --chdb-path ./.dev/chdb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger("text", logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			cfg, err := loadSinkConfig(configPath)
			if err != nil {
				return err
			}
			overrideList(&cfg.Kafka.Brokers, brokers)
			overrideList(&cfg.ClickHouse.Addr, addr)
			override(&cfg.ClickHouse.CHDBPath, chdbPath)
			override(&cfg.Kafka.Group, group)
			override(&cfg.Metrics.Listen, metricsListen)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runSink(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "sink configuration file (YAML)")
	f.StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated")
	f.StringVar(&addr, "clickhouse", "", "ClickHouse native-protocol addresses, comma-separated")
	f.StringVar(&chdbPath, "chdb-path", "", "embedded chDB data directory (binary built with -tags chdb)")
	f.StringVar(&group, "group", "", "Kafka consumer group (default tapline-sink)")
	f.StringVar(&metricsListen, "metrics-listen", "", "address for /metrics, e.g. 127.0.0.1:9466")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func runSink(ctx context.Context, cfg *clickhouse.SinkFile) error {
	// Checked before waiting for ClickHouse, so a bad setting fails at once.
	security, err := cfg.Kafka.Security.Opts(os.LookupEnv)
	if err != nil {
		return err
	}
	wcfg := cfg.Kafka.WriterConfig
	wcfg.Opts = append(security, wcfg.Opts...)
	if len(cfg.SchemaRegistry.URLs) > 0 {
		if wcfg.Registry, err = registry.Open(cfg.SchemaRegistry, os.LookupEnv); err != nil {
			return err
		}
	}
	store, err := openAndMigrate(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for ClickHouse
		}
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := clickhouse.NewWriter(wcfg, store, reg)
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln) //nolint:errcheck // ends with Close below
		defer srv.Close()
		slog.Info("sink metrics", "addr", ln.Addr().String())
	}
	slog.Info("sink running", "brokers", cfg.Kafka.Brokers, "group", cfg.Kafka.Group)
	return w.Run(ctx)
}

// openAndMigrate opens the store and applies the migrations, waiting with backoff
// while the server is unreachable (it may start after the sink); other errors, such
// as a server too old for the schema, end the sink.
func openAndMigrate(ctx context.Context, cfg *clickhouse.SinkFile) (clickhouse.Store, error) {
	backoff := time.Second
	for {
		store, err := openSinkStore(ctx, cfg)
		if err == nil {
			if err = store.Migrate(ctx); err == nil {
				return store, nil
			}
			store.Close()
		}
		var netErr net.Error
		if !errors.As(err, &netErr) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
		slog.Warn("sink: ClickHouse unreachable; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func openSinkStore(ctx context.Context, cfg *clickhouse.SinkFile) (clickhouse.Store, error) {
	ch := cfg.ClickHouse
	return openStore(ctx, "sink", ch.ServerConfig, ch.Config, ch.CHDBPath, ch.CHDBConfigFile)
}
