package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
)

func init() { register(newKubeconfigCmd()) }

// newKubeconfigCmd prints a kubeconfig whose server is the gateway's route to a
// Kubernetes target, trusting the gateway's certificate, with the agent's token.
func newKubeconfigCmd() *cobra.Command {
	var (
		target, server, configPath, dataDir, token, sub string
		groups                                          []string
		ttl                                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print a kubeconfig that reaches a Kubernetes target through the gateway",
		Long: `Print a kubeconfig for stock kubectl: its server is the gateway's HTTP listener
with the target's path, its CA the gateway's certificate, its user token the agent's
OIDC token (--token, or one minted from the dev issuer with --sub). The gateway
verifies the token and calls the API server as the agent (impersonation).`,
		Example: `  tapline kubeconfig --target prod-cluster --server https://gateway:8443 --token "$TOKEN" > kubeconfig
  KUBECONFIG=kubeconfig kubectl get pods
  tapline kubeconfig --target dev-cluster --config gateway.yaml --sub alice --groups ops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certFile := ""
			if configPath != "" {
				cfg, err := gateway.Load(configPath)
				if err != nil {
					return err
				}
				dataDir = cfg.DataDir
				if cfg.HTTP != nil {
					certFile = cfg.HTTP.TLSCert
					if server == "" {
						server = gatewayURL(cfg.HTTP.Listen)
					}
				}
			}
			if server == "" {
				return errors.New("--server is required (the gateway's HTTP listener, https://HOST:PORT), or --config with an http: section")
			}
			if token == "" && sub == "" {
				return errors.New("give the agent's token with --token, or --sub to mint one from the dev issuer")
			}
			if token == "" {
				iss, err := devissuer.Open(dataDir)
				if err != nil {
					return err
				}
				if token, err = iss.Mint(sub, groups, ttl, devissuer.WithAudience(devissuer.GatewayAudience)); err != nil {
					return err
				}
			}
			ca, err := gateway.CertificatePEM(certFile, dataDir)
			if err != nil {
				return fmt.Errorf("the gateway's certificate: %w", err)
			}
			out, err := kubeconfig(strings.TrimSuffix(server, "/")+"/"+target, target, ca, token)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "the gateway's Kubernetes target (required)")
	f.StringVar(&server, "server", "", "the gateway's HTTP listener as a URL (default: from --config's http.listen)")
	f.StringVar(&configPath, "config", "", "gateway configuration file (its http.listen, http.tls_cert, data_dir)")
	f.StringVar(&dataDir, "data-dir", devissuer.DefaultDataDir(), "data directory of the gateway or 'tapline dev' (env "+devissuer.EnvDataDir+")")
	f.StringVar(&token, "token", "", "the agent's OIDC token for the gateway")
	f.StringVar(&sub, "sub", "", "mint a dev-issuer token for this subject instead of --token")
	f.StringSliceVar(&groups, "groups", nil, "groups of the minted token")
	f.DurationVar(&ttl, "ttl", time.Hour, "validity of the minted token")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

func gatewayURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port)
}

// kubeconfig is a v1 Config with one cluster, user and context, all named target.
func kubeconfig(server, target string, caPEM []byte, token string) ([]byte, error) {
	named := func(key string, v any) map[string]any { return map[string]any{"name": target, key: v} }
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{named("cluster", map[string]any{"server": server, "certificate-authority-data": base64.StdEncoding.EncodeToString(caPEM)})},
		"users":           []any{named("user", map[string]any{"token": token})},
		"contexts":        []any{named("context", map[string]any{"cluster": target, "user": target})},
		"current-context": target,
	}
	return yaml.Marshal(cfg)
}
