package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/processors/runner"
)

func init() { register(newProcessCmd()) }

func newProcessCmd() *cobra.Command {
	var configPath, brokers, logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "process --brokers HOST:PORT[,...] [--config FILE]",
		Short: "Run the exactly-once processors (mask, stitch, audit)",
		Long: `Run the processors: consume tapline.frames.raw in a consumer group and, in one Kafka
transaction per batch, write masked frames to tapline.frames, stitched commands to
tapline.commands, session summaries to tapline.sessions, flat JSON audit records to
tapline.audit, and each session's state to tapline.processor.state.

Every setting has a default; the optional configuration file (docs/processors.md)
sets masking rules per target, trusted gateway keys, timeouts and topic names.
--brokers (or TAPLINE_KAFKA_BROKERS) overrides the file's kafka.brokers. SIGINT or
SIGTERM finishes the transaction in flight and leaves the group.`,
		Example: `  tapline process --brokers 127.0.0.1:9092
  tapline process --brokers kafka-0:9092,kafka-1:9092 --config /etc/tapline/process.yaml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			env := func(k string) (string, bool) {
				if k == "TAPLINE_KAFKA_BROKERS" && brokers != "" {
					return brokers, true
				}
				return os.LookupEnv(k)
			}
			cfg, err := runner.Load(configPath, env)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
			return runner.Run(ctx, cfg, log, reg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "processor configuration file (YAML, optional)")
	f.StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated (default: $TAPLINE_KAFKA_BROKERS or the file's kafka.brokers)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
