package corpus

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

// TestRecordCorpus re-records testdata/*.ndjson from real clients through the real
// gateway and Kafka. It runs only when TAPLINE_RECORD_CORPUS=1: the corpus is a
// fixed input, and re-recording it changes the goldens (run with -update after).
func TestRecordCorpus(t *testing.T) {
	if os.Getenv("TAPLINE_RECORD_CORPUS") != "1" {
		t.Skip("set TAPLINE_RECORD_CORPUS=1 to re-record the corpus")
	}
	r := newRecorder(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(r, t, r.token(t, sc.name, sc.group)) })
	}
	r.write(t)
}

type scenario struct {
	name, group string
	run         func(r *recorder, t *testing.T, token string)
}

var scenarios = []scenario{
	{"psql", "dba", (*recorder).psql},
	{"pgx-pipeline", "dba", (*recorder).pgxPipeline},
	{"pgbench-prepared", "dba", (*recorder).pgbench},
	{"ssh-shell-resize", "ops", (*recorder).shell},
	{"ssh-exec", "ops", (*recorder).execs},
	{"ssh-scp-sftp", "ops", (*recorder).transfers},
	{"ssh-port-forward", "ops", (*recorder).forward},
}

type recorder struct {
	dir     string
	brokers []string
	topic   string
	pg      testenv.PG
	target  testenv.SSHTarget
	iss     *devissuer.Issuer
	gw      *gateway.Gateway
	hostKey ssh.PublicKey
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{dir: t.TempDir(), brokers: testenv.Kafka(t), pg: testenv.Postgres(t), target: testenv.SSH(t),
		topic: fmt.Sprintf("corpus-%d.frames.raw", time.Now().UnixNano())}
	testenv.CreateTopic(t, r.brokers, r.topic, 1)
	iss, err := devissuer.Open(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.iss = iss
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = iss.Serve(ctx, "") }()
	cfg := map[string]any{
		"gateway_id": "corpus-gw",
		"data_dir":   filepath.Join(r.dir, "gateway"),
		"kafka":      map[string]any{"brokers": r.brokers, "topic": r.topic, "mode": "strict"},
		"oidc":       map[string]any{"issuer": iss.URL(), "audience": devissuer.DefaultAudience},
		"postgres":   map[string]any{"listen": "127.0.0.1:0"},
		"ssh":        map[string]any{"listen": "127.0.0.1:0"},
		"targets": []any{
			map[string]any{"name": "appdb", "protocol": "postgres", "address": r.pg.Addr(), "groups": []string{"dba"},
				"postgres": map[string]any{"database": r.pg.DB, "user": r.pg.GWUser, "password_env": "CORPUS_PG_PASSWORD",
					"tls": "verify-full", "ca_file": r.pg.SSLCert}},
			map[string]any{"name": "box", "protocol": "ssh", "address": r.target.Addr(), "groups": []string{"ops"},
				"ssh": map[string]any{"user": r.target.User, "key_file": r.target.KeyPath, "known_hosts": r.target.KnownHostsPath, "allow_port_forwarding": true}},
		},
	}
	b, _ := yaml.Marshal(cfg)
	parsed, err := gateway.Parse(b, func(k string) (string, bool) { return r.pg.GWPassword, k == "CORPUS_PG_PASSWORD" })
	if err != nil {
		t.Fatal(err)
	}
	// The issuer must answer discovery before the gateway starts.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r.gw, err = gateway.New(ctx, parsed, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = r.gw.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	key, err := os.ReadFile(filepath.Join(r.dir, "gateway", "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	r.hostKey = signer.PublicKey()
	return r
}

func (r *recorder) token(t *testing.T, sub, group string) string {
	tok, err := r.iss.Mint(sub, []string{group}, time.Hour, devissuer.WithEmail(sub+"@corpus.example.net"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (r *recorder) pgAddr() (string, string) {
	host, port, _ := net.SplitHostPort(r.gw.Addr("postgres").String())
	return host, port
}

func run(t *testing.T, cmd *exec.Cmd) string {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("%s: %v\n%s", cmd.Args[0], err, out.String())
	return out.String()
}

func pgEnv(token, home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGPASSWORD="+token, "HOME="+home)
}

func (r *recorder) psql(t *testing.T, token string) {
	host, port := r.pgAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=0",
		fmt.Sprintf("host=%s port=%s dbname=appdb user=psql sslmode=require", host, port),
		"-c", "CREATE TEMP TABLE people (id int, email text, password_hash text)",
		"-c", "INSERT INTO people VALUES (1, 'ada@example.com', 'h1'), (2, 'bob@example.com', 'h2')",
		"-c", "SELECT id, email FROM people ORDER BY id",
		"-c", "SELECT * FROM missing_table",
		"-c", "SELECT 1; SELECT 2/0; SELECT 3",
		"-c", "\\copy people TO STDOUT")
	cmd.Env = pgEnv(token, t.TempDir())
	run(t, cmd)
}

func (r *recorder) pgxPipeline(t *testing.T, token string) {
	host, port := r.pgAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=appdb user=pgx password=%s sslmode=require", host, port, token))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Prepare(ctx, "by_id", "SELECT $1::int * 2 AS doubled, $2::text AS label"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		var d int
		var l string
		if err := c.QueryRow(ctx, "by_id", i, "row").Scan(&d, &l); err != nil {
			t.Fatal(err)
		}
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 'never runs'")
	b.Queue("SELECT $1::int", 4)
	err = c.SendBatch(ctx, b).Close()
	t.Logf("batch: %v", err)
	var n int
	if err := c.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
		t.Fatalf("after the failed pipeline: %d %v", n, err)
	}
}

func (r *recorder) pgbench(t *testing.T, token string) {
	host, port := r.pgAddr()
	script := filepath.Join(t.TempDir(), "bench.sql")
	if err := os.WriteFile(script, []byte("\\set id random(1, 1000)\nSELECT :id::int + 1;\nSELECT md5(:id::text);\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-M", "prepared", "-t", "3", "-c", "1", "-f", script,
		"-h", host, "-p", port, "-U", "pgbench", "appdb")
	cmd.Env = append(pgEnv(token, t.TempDir()), "PGSSLMODE=require")
	run(t, cmd)
}

func (r *recorder) sshClient(t *testing.T, token string) *ssh.Client {
	cl, err := ssh.Dial("tcp", r.gw.Addr("ssh").String(), &ssh.ClientConfig{
		User: r.target.User + "+box", Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(r.hostKey), Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// shell types into an interactive shell on a pty, waiting for each answer, and
// resizes the terminal halfway.
func (r *recorder) shell(t *testing.T, token string) {
	cl := r.sshClient(t, token)
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	out := &syncBuf{}
	sess.Stdout, sess.Stderr = out, out
	stdin, _ := sess.StdinPipe()
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	typeLine := func(line, want string) {
		_, _ = io.WriteString(stdin, line)
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after %q: %q", want, line, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	typeLine("export PS1='$ '\n", "$ ")
	typeLine("echo one-$((40+2))\n", "one-42")
	typeLine("ech\x7fho col\x1b[Dl\n", "coll")
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	typeLine("stty size\n", "40 120")
	typeLine("ls /no/such/dir\n", "No such file")
	typeLine("printf '\\033[1;31mred\\033[0m\\n'\n", "red")
	_, _ = io.WriteString(stdin, "exit 0\n")
	_ = sess.Wait()
}

func (r *recorder) execs(t *testing.T, token string) {
	cl := r.sshClient(t, token)
	defer cl.Close()
	for _, c := range []string{"echo hello; exit 3", "true", "kill -TERM $$"} {
		sess, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.CombinedOutput(c)
		t.Logf("%s: %q %v", c, out, err)
	}
}

func (r *recorder) sshArgs(t *testing.T, token string) ([]string, []string) {
	d := t.TempDir()
	host, port, _ := net.SplitHostPort(r.gw.Addr("ssh").String())
	kh := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(r.hostKey))
	_ = os.WriteFile(filepath.Join(d, "known_hosts"), []byte(kh), 0o600)
	_ = os.WriteFile(filepath.Join(d, "token"), []byte(token), 0o600)
	askpass := filepath.Join(d, "askpass")
	_ = os.WriteFile(askpass, []byte("#!/bin/sh\nexec cat '"+filepath.Join(d, "token")+"'\n"), 0o700)
	args := []string{"-F", "/dev/null", "-P", port,
		"-o", "UserKnownHostsFile=" + filepath.Join(d, "known_hosts"), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "PubkeyAuthentication=no",
		"-o", "PreferredAuthentications=keyboard-interactive,password", "-o", "NumberOfPasswordPrompts=1"}
	env := append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "HOME="+d)
	return args, env
}

// transfers copies a file up with scp and back down with an sftp batch, one
// connection each.
func (r *recorder) transfers(t *testing.T, token string) {
	args, env := r.sshArgs(t, token)
	d := t.TempDir()
	src := filepath.Join(d, "notes.txt")
	_ = os.WriteFile(src, []byte("corpus file\nline two\n"), 0o600)
	remote := r.target.User + "+box@127.0.0.1"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "scp", append(args, src, remote+":/tmp/corpus-notes.txt")...)
	cmd.Env = env
	run(t, cmd)
	batch := filepath.Join(d, "batch")
	_ = os.WriteFile(batch, []byte("get /tmp/corpus-notes.txt "+filepath.Join(d, "back.txt")+"\nls /tmp/corpus-notes.txt\n"), 0o600)
	// Commands on stdin rather than -b: batch mode would forbid the password prompt.
	cmd = exec.CommandContext(ctx, "sftp", append(args, remote)...)
	cmd.Env = env
	cmd.Stdin, _ = os.Open(batch)
	run(t, cmd)
}

// forward opens a direct-tcpip channel to the target's own sshd and reads its
// banner.
func (r *recorder) forward(t *testing.T, token string) {
	cl := r.sshClient(t, token)
	defer cl.Close()
	c, err := cl.Dial("tcp", r.target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 7)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "SSH-2.0" {
		t.Fatalf("banner %q: %v", b, err)
	}
	_, _ = c.Write([]byte("SSH-2.0-corpus\r\n"))
	c.Close()
}

// write reads the topic back and writes one NDJSON file per session, named after
// the scenario (its token's subject) and numbered in order.
func (r *recorder) write(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ConsumeTopics(r.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sessions := map[string][]schemas.Frame{}
	ended := map[string]bool{}
	want := len(scenarios)
	deadline := time.Now().Add(60 * time.Second)
	for countSubjects(sessions, ended) < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d scenarios' sessions ended", countSubjects(sessions, ended))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(rec *kgo.Record) {
			f, err := schemas.FrameCodec().Decode(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			sessions[f.SessionID] = append(sessions[f.SessionID], f)
			if f.Kind == "session.end" {
				ended[f.SessionID] = true
			}
		})
	}
	time.Sleep(2 * time.Second) // late-ending sessions of the last scenario
	ids := make([]string, 0, len(sessions))
	for id := range sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	n := map[string]int{}
	for _, id := range ids {
		if !ended[id] {
			continue
		}
		fs := sessions[id]
		sub := subject(fs)
		n[sub]++
		var buf bytes.Buffer
		for _, f := range fs {
			b, _ := json.Marshal(f)
			buf.Write(append(b, '\n'))
		}
		name := fmt.Sprintf("testdata/%s-%d.ndjson", sub, n[sub])
		if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile("testdata/gateway.pub", []byte(hex.EncodeToString(r.gw.PublicKey())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func subject(fs []schemas.Frame) string {
	for _, f := range fs {
		if f.Kind == "session.start" || f.Kind == "session.denied" {
			var p struct{ Start struct{ Subject string } }
			_ = json.Unmarshal(f.Payload, &p)
			return p.Start.Subject
		}
	}
	return "unknown"
}

func countSubjects(sessions map[string][]schemas.Frame, ended map[string]bool) int {
	subs := map[string]bool{}
	for id, fs := range sessions {
		if ended[id] {
			subs[subject(fs)] = true
		}
	}
	return len(subs)
}

type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuf) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }
