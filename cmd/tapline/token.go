package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/tapline/tapline/auth/devissuer"
)

func init() { register(newTokenCmd()) }

// newTokenCmd mints a token from the dev issuer's persisted key. It needs no
// network and no running `tapline dev`: both read the same data directory.
func newTokenCmd() *cobra.Command {
	var (
		sub, email, name, aud, role, dataDir string
		groups                               []string
		ttl                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a token from the dev issuer",
		Long: `Print a signed OIDC token from the dev issuer that ` + "`tapline dev`" + ` serves.

The issuer's key and URL live in the data directory ($` + devissuer.EnvDataDir + ` or ./.dev),
created on first use, so tokens minted before ` + "`tapline dev`" + ` starts stay valid.
Gateway and query API tokens have different audiences (tapline-gateway,
tapline-query), so a token shown to one cannot open the other: mint the gateway's
(the default) for the Postgres or SSH password, and --for query for the API.`,
		Example: `  export PGPASSWORD=$(tapline token --sub alice --groups dba)
  export TAPLINE_TOKEN=$(tapline token --for query --sub alice --groups auditors)
  tapline token --sub ci-runner --groups deploy,ops --ttl 15m --data-dir /var/lib/tapline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if aud == "" {
				switch role {
				case "gateway":
					aud = devissuer.GatewayAudience
				case "query":
					aud = devissuer.QueryAudience
				default:
					return fmt.Errorf("--for %q: want gateway or query", role)
				}
			}
			iss, err := devissuer.Open(dataDir)
			if err != nil {
				return err
			}
			opts := []devissuer.Option{devissuer.WithAudience(aud)}
			if email != "" {
				opts = append(opts, devissuer.WithEmail(email))
			}
			if name != "" {
				opts = append(opts, devissuer.WithName(name))
			}
			tok, err := iss.Mint(sub, groups, ttl, opts...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "subject: who the token identifies (required)")
	f.StringSliceVar(&groups, "groups", nil, "group membership; repeat the flag or separate with commas")
	f.DurationVar(&ttl, "ttl", time.Hour, "validity from now")
	f.StringVar(&email, "email", "", "email claim (default SUB@"+devissuer.EmailDomain+")")
	f.StringVar(&name, "name", "", "name claim (default SUB)")
	f.StringVar(&role, "for", "gateway", "who accepts the token: gateway (Postgres, SSH) or query (the API); sets the audience")
	f.StringVar(&aud, "aud", "", "audience claim (overrides --for)")
	f.StringVar(&dataDir, "data-dir", devissuer.DefaultDataDir(), "data directory shared with 'tapline dev' (env "+devissuer.EnvDataDir+")")
	_ = cmd.MarkFlagRequired("sub")
	return cmd
}
