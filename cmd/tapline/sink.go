package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/sinks/sink"
)

func init() { register(newSinkCmd()) }

func newSinkCmd() *cobra.Command {
	var brokers, addr, chdbPath, group, metricsListen string
	var rf *roleFlags
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
TAPLINE_* environment variables override the file and flags override both
(docs/configuration.md). See docs/storage.md.`,
		Example: `  tapline sink --config /etc/tapline/sink.yaml
  tapline sink --brokers 127.0.0.1:9092 --clickhouse 127.0.0.1:9000
  TAPLINE_CLICKHOUSE_ADDR=ch-0:9000 tapline sink --config sink.yaml --log-format json
  CHDB_LIB_PATH=/opt/chdb/libchdb.so tapline sink --brokers 127.0.0.1:9092 --chdb-path ./.dev/chdb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := rf.logger()
			if err != nil {
				return err
			}
			cfg, err := sink.Load(rf.config, os.LookupEnv)
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
			return sink.Run(ctx, cfg, log)
		},
	}
	rf = addRoleFlags(cmd, "sink configuration file (YAML)")
	f := cmd.Flags()
	f.StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated")
	f.StringVar(&addr, "clickhouse", "", "ClickHouse native-protocol addresses, comma-separated")
	f.StringVar(&chdbPath, "chdb-path", "", "embedded chDB data directory (binary built with -tags chdb)")
	f.StringVar(&group, "group", "", "Kafka consumer group (default tapline-sink)")
	f.StringVar(&metricsListen, "metrics-listen", "", "address for /metrics, /healthz and /readyz, e.g. 127.0.0.1:9466")
	return cmd
}
