package main

import (
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
)

func init() { register(newCACmd()) }

func newCACmd() *cobra.Command {
	var configPath, dataDir string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print the certificate agents trust for the gateway's Postgres listener",
		Long: `Print, as PEM, the certificate the gateway's Postgres listener presents: its
postgres.tls_cert, or the self-signed one it generated into data_dir. Agents
save it and connect with PGSSLROOTCERT=FILE and sslmode=verify-full, so a
machine in the path cannot pose as the gateway and collect their tokens.
When tls_cert comes from your own CA, hand agents that CA instead.`,
		Example: `  tapline ca --data-dir .dev > gateway-ca.pem
  PGSSLROOTCERT=gateway-ca.pem psql "host=127.0.0.1 port=15432 dbname=demo user=alice sslmode=verify-full"
  tapline ca --config /etc/tapline/gateway.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certFile := ""
			if configPath != "" {
				cfg, err := gateway.Load(configPath)
				if err != nil {
					return err
				}
				if cfg.Postgres != nil {
					certFile = cfg.Postgres.TLSCert
				}
				dataDir = cfg.DataDir
			}
			pem, err := gateway.CertificatePEM(certFile, dataDir)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "gateway configuration file (its postgres.tls_cert or data_dir)")
	f.StringVar(&dataDir, "data-dir", devissuer.DefaultDataDir(), "data directory of the gateway or 'tapline dev' (env "+devissuer.EnvDataDir+")")
	return cmd
}
