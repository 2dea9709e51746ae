package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/query/server"
)

func init() { register(newQueryCmd()) }

func newQueryCmd() *cobra.Command {
	var (
		listen, addr, chdbPath, issuer, audience, auditors, accessLog string
		trusted                                                       []string
		rf                                                            *roleFlags
	)
	cmd := &cobra.Command{
		Use:   "query [--config FILE]",
		Short: "Serve the HTTP query, replay and verify API",
		Long: `Serve the query API under /api/v1: session search, commands, frames, replay,
verification and read-only SQL for auditors (OpenAPI at /api/v1/openapi.yaml).

Callers present an OIDC bearer token from the configured issuer. Members of the
auditors group see every session; others only their own. Every request is logged as
an api_access record, and also appended to access_log when set.

The store is a ClickHouse server (clickhouse.addr) or, in binaries built with
-tags chdb, embedded chDB (clickhouse.chdb_path). The query role never migrates:
it reads with a login that cannot write (tapline_reader) and refuses to start on a
store the sink has not migrated. TAPLINE_* environment variables override the file
and flags override both (docs/configuration.md). See docs/api.md.`,
		Example: `  tapline query --config /etc/tapline/query.yaml
  tapline query --clickhouse 127.0.0.1:9000 --oidc-issuer https://idp.example.com --oidc-audience tapline \
      --trusted-key /etc/tapline/gateway-key.pub --access-log /var/log/tapline/api-access.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := rf.logger()
			if err != nil {
				return err
			}
			cfg, err := server.Load(rf.config, os.LookupEnv)
			if err != nil {
				return err
			}
			override(&cfg.Listen, listen)
			override(&cfg.ClickHouse.CHDBPath, chdbPath)
			override(&cfg.OIDC.Issuer, issuer)
			override(&cfg.OIDC.Audience, audience)
			override(&cfg.AuditorsGroup, auditors)
			override(&cfg.AccessLog, accessLog)
			overrideList(&cfg.ClickHouse.Addr, addr)
			cfg.TrustedGatewayKeys = append(cfg.TrustedGatewayKeys, trusted...)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return server.Run(ctx, cfg, log)
		},
	}
	rf = addRoleFlags(cmd, "query server configuration file (YAML)")
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "listen address (default "+server.DefaultListen+")")
	f.StringVar(&addr, "clickhouse", "", "ClickHouse native-protocol addresses, comma-separated")
	f.StringVar(&chdbPath, "chdb-path", "", "embedded chDB data directory (binary built with -tags chdb)")
	f.StringVar(&issuer, "oidc-issuer", "", "OIDC issuer URL whose tokens are accepted")
	f.StringVar(&audience, "oidc-audience", "", "required token audience")
	f.StringVar(&auditors, "auditors-group", "", "group that sees every session and may use SQL (default auditors)")
	f.StringArrayVar(&trusted, "trusted-key", nil, "trusted gateway key: 64 hex digits or a key file (repeatable)")
	f.StringVar(&accessLog, "access-log", "", "file that gets every api_access record as a JSON line")
	return cmd
}
