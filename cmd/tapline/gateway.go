package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/ingest/gateway"
)

func init() { register(newGatewayCmd()) }

func newGatewayCmd() *cobra.Command {
	var rf *roleFlags
	cmd := &cobra.Command{
		Use:   "gateway --config FILE",
		Short: "Run the edge proxies (Postgres, SSH) that record every frame to Kafka",
		Long: `Run the gateway: agents connect to its listeners with an OIDC token, it logs in to
the target with its own credentials and records every protocol message to Kafka.

The configuration file is described in docs/configuration.md; TAPLINE_* environment
variables override its top-level settings. SIGINT or SIGTERM ends live sessions,
flushes the recordings and exits.`,
		Example: `  tapline gateway --config /etc/tapline/gateway.yaml
  TAPLINE_KAFKA_BROKERS=kafka-0:9092,kafka-1:9092 tapline gateway --config gateway.yaml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := rf.logger()
			if err != nil {
				return err
			}
			cfg, err := gateway.Load(rf.config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return gateway.Run(ctx, cfg, log)
		},
	}
	rf = addRoleFlags(cmd, "gateway configuration file (YAML, required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
