package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/config"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/processors/runner"
	"github.com/tapline/tapline/query/server"
	"github.com/tapline/tapline/sinks/sink"
)

// runRole runs `tapline ARGS...` as main does (ARGS[0] a role), with a deadline so that a role that
// got past its configuration checks (and would wait for Kafka) ends.
func runRole(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Fresh commands each time: flag values would otherwise carry over between runs.
	fresh := map[string]func() *cobra.Command{"gateway": newGatewayCmd, "process": newProcessCmd, "sink": newSinkCmd, "query": newQueryCmd}
	root := &cobra.Command{Use: "tapline", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(fresh[args[0]]())
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// Each role reads TAPLINE_* overrides of its file: a bad value set only in the
// environment stops the role with the role's own check naming it.
func TestEveryRoleReadsEnvironmentOverrides(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	gw := "kafka: {brokers: [127.0.0.1:1]}\noidc: {issuer: https://idp.example, audience: a}\nssh: {listen: 127.0.0.1:0}\n"
	if err := os.WriteFile(file, []byte(gw), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"gateway", "--config", file}, map[string]string{"TAPLINE_KAFKA_MODE": "sometimes"}, `kafka.mode: "sometimes"`},
		{[]string{"process"}, map[string]string{"TAPLINE_KAFKA_BROKERS": "127.0.0.1:1", "TAPLINE_TOPICS_FRAMES": "same", "TAPLINE_TOPICS_COMMANDS": "same"},
			`are both "same"`},
		{[]string{"sink"}, map[string]string{"TAPLINE_KAFKA_BROKERS": "127.0.0.1:1", "TAPLINE_KAFKA_SASL_MECHANISM": "GSSAPI", "TAPLINE_KAFKA_SASL_USERNAME": "u"},
			`"GSSAPI" not supported`},
		{[]string{"query"}, map[string]string{"TAPLINE_OIDC_ISSUER": "https://idp.example", "TAPLINE_OIDC_AUDIENCE": "a", "TAPLINE_ACCESS_LOG_REQUIRED": "true"},
			"access_log_required is set"},
		{[]string{"query"}, map[string]string{"TAPLINE_ACCESS_LOG_REQUIRED": "maybe"}, `TAPLINE_ACCESS_LOG_REQUIRED="maybe": not a boolean`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			err := runRole(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("tapline %v with %v: %v, want an error containing %q", c.args, c.env, err, c.want)
			}
		})
	}
}

// Every role takes the same logging flags, and checks them before anything else.
func TestEveryRoleTakesTheLoggingFlags(t *testing.T) {
	for _, role := range []string{"gateway", "process", "sink", "query"} {
		for _, c := range []struct{ flag, want string }{{"--log-format=yaml", "--log-format"}, {"--log-level=loud", "--log-level"}} {
			err := runRole(t, role, "--config", "/nonexistent", c.flag)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("tapline %s %s: %v, want an error about %s", role, c.flag, err, c.want)
			}
		}
	}
}

// docs/configuration.md lists every override of every role.
func TestEveryRoleOverrideDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string][]config.Override{
		"gateway": config.Overrides(&gateway.Config{}), "process": config.Overrides(&runner.Config{}),
		"sink": config.Overrides(&sink.Config{}), "query": config.Overrides(&server.Config{}),
	}
	for role, overrides := range roles {
		_, section, _ := strings.Cut(string(doc), fmt.Sprintf("#### `tapline %s`", role))
		section, _, _ = strings.Cut(section, "\n#")
		for _, o := range overrides {
			if row := fmt.Sprintf("| `%s` | %s |", o.Env, o.Key); !strings.Contains(section, row) {
				t.Errorf("docs/configuration.md, tapline %s: no row %q", role, row)
			}
		}
	}
}
