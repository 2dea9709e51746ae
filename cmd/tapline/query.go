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

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/ingest/auth"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/sinks/clickhouse"
)

func init() { register(newQueryCmd()) }

func newQueryCmd() *cobra.Command {
	var (
		configPath, listen, addr, chdbPath, issuer, audience, auditors, accessLog, logLevel string
		trusted                                                                             []string
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
-tags chdb, embedded chDB (clickhouse.chdb_path). Flags override the file. See docs/api.md.`,
		Example: `  tapline query --config /etc/tapline/query.yaml
  tapline query --clickhouse 127.0.0.1:9000 --oidc-issuer https://idp.example.com --oidc-audience tapline \
      --trusted-key /etc/tapline/gateway-key.pub --access-log /var/log/tapline/api-access.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger("json", logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			cfg := &api.FileConfig{}
			if err := loadConfig(configPath, cfg); err != nil {
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
			return runQuery(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "query server configuration file (YAML)")
	f.StringVar(&listen, "listen", "", "listen address (default 127.0.0.1:8080)")
	f.StringVar(&addr, "clickhouse", "", "ClickHouse native-protocol addresses, comma-separated")
	f.StringVar(&chdbPath, "chdb-path", "", "embedded chDB data directory (binary built with -tags chdb)")
	f.StringVar(&issuer, "oidc-issuer", "", "OIDC issuer URL whose tokens are accepted")
	f.StringVar(&audience, "oidc-audience", "", "required token audience")
	f.StringVar(&auditors, "auditors-group", "", "group that sees every session and may use SQL (default auditors)")
	f.StringArrayVar(&trusted, "trusted-key", nil, "trusted gateway key: 64 hex digits or a key file (repeatable)")
	f.StringVar(&accessLog, "access-log", "", "file that gets every api_access record as a JSON line")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func runQuery(ctx context.Context, cfg *api.FileConfig) error {
	if cfg.OIDC.Issuer == "" || cfg.OIDC.Audience == "" {
		return errors.New("query: oidc.issuer and oidc.audience are required (--oidc-issuer, --oidc-audience)")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.AccessLogRequired && cfg.AccessLog == "" {
		return errors.New("query: access_log_required is set but access_log is not: set access_log to the file that keeps the access trail")
	}
	apiCfg, err := cfg.APIConfig()
	if err != nil {
		return err
	}
	if cfg.AccessLog != "" {
		l, err := api.OpenFileAccessLog(cfg.AccessLog)
		if err != nil {
			return err
		}
		defer l.Close()
		apiCfg.AccessLog = l
	}
	verifier, err := auth.NewVerifier(ctx, cfg.OIDC)
	if err != nil {
		return err
	}
	store, err := openQueryStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	h, err := withConsole(ctx, cfg.Console, cfg.OIDC, &apiCfg, func() http.Handler { return api.New(apiCfg, store, verifier) })
	if err != nil {
		return err
	}
	return serveQuery(ctx, cfg, h)
}

// withConsole mounts the web console at "/" around the API that newAPI builds, after
// telling the API about the console's session cookie.
func withConsole(ctx context.Context, cc console.Config, oidc auth.Config, apiCfg *api.Config, newAPI func() http.Handler) (http.Handler, error) {
	if cc.Disabled {
		return newAPI(), nil
	}
	c, err := console.New(ctx, cc, oidc)
	if err != nil {
		return nil, err
	}
	if v := c.Verifier(); v != nil {
		apiCfg.SessionCookie, apiCfg.SessionVerifier = console.CookieName, v
	}
	return c.Handler(newAPI()), nil
}

func openQueryStore(ctx context.Context, cfg *api.FileConfig) (clickhouse.Store, error) {
	ch := cfg.ClickHouse
	store, err := openStore(ctx, "query", ch.ServerConfig, ch.Config, ch.CHDBPath, "")
	if err != nil {
		return nil, err
	}
	// The sink migrates; the query role reads, with a login that should not be able
	// to write (tapline_reader, docs/security.md). It only checks the schema is there.
	if err := store.CheckSchema(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("query: %w", err)
	}
	return store, nil
}

func serveQuery(ctx context.Context, cfg *api.FileConfig, h http.Handler) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("query: listen: %w", err)
	}
	if err := checkPlaintext(cfg, ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	// No write timeout: replays and frame streams last as long as a followed session.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			return
		}
		errc <- srv.Serve(ln)
	}()
	slog.Info("query API serving", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")
	select {
	case err := <-errc:
		return fmt.Errorf("query: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// checkPlaintext refuses plain HTTP off loopback: every request carries a bearer
// token that anyone on the path could replay.
func checkPlaintext(cfg *api.FileConfig, addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if cfg.TLSCert != "" || cfg.AllowPlaintext || (ok && tcp.IP.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("query: listen %s is not a loopback address and no tls_cert is set: bearer tokens would cross the network in clear; "+
		"set tls_cert and tls_key, or allow_plaintext: true if a TLS-terminating proxy is in front", cfg.Listen)
}
