// Command tapline is the one binary of tapline: every role (gateway, processors,
// sink, query API) and every client command is a subcommand.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// version and commit are set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// commands is filled by each subcommand's file through register, so that adding a
// role touches only its own file.
var commands []*cobra.Command

func register(c *cobra.Command) { commands = append(commands, c) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "tapline",
		Short:         "Session recording for automated agents: Postgres, SSH, Kubernetes and HTTP",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands...)
	return root
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
