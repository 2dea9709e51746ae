// Package server is the query role: it opens the store for reading, checks bearer
// tokens against the configured issuer and serves the HTTP API of package api
// until its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/config"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/query/store"
)

// Config is the query role's configuration file, `tapline query --config`.
type Config = api.FileConfig

// DefaultListen is the API's address when listen is empty.
const DefaultListen = "127.0.0.1:8080"

// Load reads the file at path (optional) with TAPLINE_* overrides from env.
func Load(path string, env config.Lookup) (*Config, error) {
	cfg := &Config{}
	if err := config.Load(path, cfg, env); err != nil {
		return nil, err
	}
	return cfg, nil
}

// EnvKeys lists the environment overrides the query role reads, in file order.
func EnvKeys() []string { return config.EnvKeys(&Config{}) }

// Run serves the API until ctx ends.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.OIDC.Issuer == "" || cfg.OIDC.Audience == "" {
		return errors.New("query: oidc.issuer and oidc.audience are required (--oidc-issuer, --oidc-audience)")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
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
	st, err := store.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("query: listen: %w", err)
	}
	h, err := WithConsole(ctx, cfg.Console, cfg.OIDC, &apiCfg, func() http.Handler { return api.New(apiCfg, st, verifier) })
	if err != nil {
		ln.Close()
		return err
	}
	return Serve(ctx, cfg, ln, h, log)
}

// WithConsole mounts the web console at "/" around the API that newAPI builds, after
// telling the API about the console's session cookie.
func WithConsole(ctx context.Context, cc console.Config, oidc auth.Config, apiCfg *api.Config, newAPI func() http.Handler) (http.Handler, error) {
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

// Serve serves h on ln until ctx ends; it owns ln.
func Serve(ctx context.Context, cfg *Config, ln net.Listener, h http.Handler, log *slog.Logger) error {
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
	log.Info("query API serving", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")
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
func checkPlaintext(cfg *Config, addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if cfg.TLSCert != "" || cfg.AllowPlaintext || (ok && tcp.IP.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("query: listen %s is not a loopback address and no tls_cert is set: bearer tokens would cross the network in clear; "+
		"set tls_cert and tls_key, or allow_plaintext: true if a TLS-terminating proxy is in front", ln(cfg, addr))
}

func ln(cfg *Config, addr net.Addr) string {
	if cfg.Listen != "" {
		return cfg.Listen
	}
	return addr.String()
}
