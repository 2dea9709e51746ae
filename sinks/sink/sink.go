// Package sink is the sink role: it migrates the store, then writes the processed
// topics (frames, commands, sessions) to it with clickhouse.Writer, committing
// offsets only after the store acknowledged a batch (docs/storage.md).
package sink

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tapline/tapline/config"
	"github.com/tapline/tapline/metricsserver"
	"github.com/tapline/tapline/schemas/registry"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Config is the sink's configuration file, `tapline sink --config`.
type Config = clickhouse.SinkFile

// Load reads the file at path (optional) with TAPLINE_* overrides from env.
func Load(path string, env config.Lookup) (*Config, error) {
	cfg := &Config{}
	if err := config.Load(path, cfg, env); err != nil {
		return nil, err
	}
	return cfg, nil
}

// EnvKeys lists the environment overrides the sink reads, in file order.
func EnvKeys() []string { return config.EnvKeys(&Config{}) }

// Run runs the sink until ctx ends.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
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
	store, err := openAndMigrate(ctx, cfg.ClickHouse, log)
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
		stop, err := metricsserver.Serve(cfg.Metrics.Listen, reg, nil, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info("sink running", "brokers", cfg.Kafka.Brokers, "group", cfg.Kafka.Group)
	return w.Run(ctx)
}

// openAndMigrate opens the store and applies the migrations, waiting with backoff
// while the server is unreachable (it may start after the sink); other errors, such
// as a server too old for the schema, end the sink.
func openAndMigrate(ctx context.Context, loc clickhouse.Location, log *slog.Logger) (clickhouse.Store, error) {
	backoff := time.Second
	for {
		store, err := clickhouse.Open(ctx, loc)
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
		log.Warn("sink: ClickHouse unreachable; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
