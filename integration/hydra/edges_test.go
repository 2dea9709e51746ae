package hydra

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
)

// agentScope is both the scope the agent's client may ask for and, through
// groups_claim: scp, the group the targets admit: a client-credentials token has
// no user groups, so a deployment maps scopes to groups.
const agentScope = "tapline-agent"

// edges is a gateway whose Postgres and SSH edges trust Hydra.
type edges struct {
	pgAddr, sshAddr string
	hostKey         ssh.PublicKey
	pg              testenv.PG
	target          testenv.SSHTarget
}

func startGateway(t *testing.T, issuer string) *edges {
	t.Helper()
	brokers := testenv.Kafka(t)
	e := &edges{pg: testenv.Postgres(t), target: testenv.SSH(t)}
	topic := fmt.Sprintf("hydra-%d.frames.raw", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		adm.DeleteTopics(ctx, topic)
		cl.Close()
	})
	dir := t.TempDir()
	cfg := map[string]any{
		"gateway_id": "hydra-gw",
		"data_dir":   dir,
		"kafka":      map[string]any{"brokers": brokers, "topic": topic, "mode": "strict"},
		"oidc":       map[string]any{"issuer": issuer, "audience": "tapline-gateway", "groups_claim": "scp"},
		"postgres":   map[string]any{"listen": "127.0.0.1:0"},
		"ssh":        map[string]any{"listen": "127.0.0.1:0"},
		"targets": []any{
			map[string]any{"name": "appdb", "protocol": "postgres", "address": e.pg.Addr(), "groups": []string{agentScope},
				"postgres": map[string]any{"database": e.pg.DB, "user": e.pg.GWUser, "password_env": "PG_PASSWORD",
					"tls": "verify-full", "ca_file": e.pg.SSLCert}},
			map[string]any{"name": "box", "protocol": "ssh", "address": e.target.Addr(), "groups": []string{agentScope},
				"ssh": map[string]any{"user": e.target.User, "key_file": e.target.KeyPath, "known_hosts": e.target.KnownHostsPath}},
		},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := gateway.Parse(b, func(k string) (string, bool) {
		if k == "PG_PASSWORD" {
			return e.pg.GWPassword, true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(context.Background())
	gw, err := gateway.New(gctx, parsed, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		stop()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Serve(gctx) }()
	t.Cleanup(func() { stop(); <-done })
	e.pgAddr, e.sshAddr = gw.Addr("postgres").String(), gw.Addr("ssh").String()
	key, err := os.ReadFile(filepath.Join(dir, "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e.hostKey = signer.PublicKey()
	return e
}

// psql runs the stock psql through the gateway with the token as the password.
func (e *edges) psql(t *testing.T, token, sql string) (string, error) {
	t.Helper()
	host, port, _ := strings.Cut(e.pgAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.pg.Bin, "psql"), "-X", "-q", "-A", "-t",
		fmt.Sprintf("host=%s port=%s dbname=appdb user=agent sslmode=require connect_timeout=10", host, port), "-c", sql)
	cmd.Env = []string{"PGPASSWORD=" + token, "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (e *edges) sshRun(token, command string) (string, error) {
	cl, err := ssh.Dial("tcp", e.sshAddr, &ssh.ClientConfig{User: e.target.User + "+box", Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(e.hostKey), Timeout: wait})
	if err != nil {
		return "", err
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(command)
	return string(out), err
}

func TestHydraTokensAtTheEdges(t *testing.T) {
	t.Parallel()
	p := startHydra(t)
	e := startGateway(t, p.issuer)
	agent := p.createClient(map[string]any{"client_name": "ci-agent", "grant_types": []string{"client_credentials"},
		"audience": []string{"tapline-gateway", "tapline-query"}, "scope": agentScope, "access_token_strategy": "jwt",
		"token_endpoint_auth_method": "client_secret_basic"})
	tok, err := p.agentTokenScope(agent, "tapline-gateway", agentScope)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.psql(t, tok, "SELECT 'through hydra ' || 6*7"); err != nil || strings.TrimSpace(out) != "through hydra 42" {
		t.Errorf("psql with a Hydra token: %v %q", err, out)
	}
	if out, err := e.sshRun(tok, "echo ssh-$((6*7))"); err != nil || strings.TrimSpace(out) != "ssh-42" {
		t.Errorf("ssh with a Hydra token: %v %q", err, out)
	}

	wrong, err := p.agentTokenScope(agent, "tapline-query", agentScope)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.psql(t, wrong, "SELECT 1"); err == nil {
		t.Errorf("psql with a tapline-query token got in: %q", out)
	}
	if _, err := e.sshRun(wrong, "true"); err == nil {
		t.Error("ssh with a tapline-query token got in")
	}
}
