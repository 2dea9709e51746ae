package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// session kinds of the load.
var kinds = []string{"psql", "pgbench", "pgx", "ssh-exec", "ssh-shell", "scp"}

// outcome is what one agent session saw from its side.
type outcome struct {
	kind, sub, marker string
	gateway           int
	start, end        time.Time
	err               error
}

// load runs agent sessions with `workers` at a time until stop is closed.
type load struct {
	s       *system
	askpass string
	scpFile string

	mu       sync.Mutex
	n        int
	outcomes []outcome
}

func newLoad(s *system) *load {
	l := &load{s: s, askpass: filepath.Join(s.dir, "askpass"), scpFile: filepath.Join(s.dir, "scp.bin")}
	if err := os.WriteFile(l.askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$TAPLINE_TOKEN\"\n"), 0o700); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(l.scpFile, make([]byte, 256<<10), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return l
}

func (l *load) run(workers int, seed uint64, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.one(rng)
			}
		}()
	}
	wg.Wait()
}

func (l *load) one(rng *rand.Rand) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	o := outcome{kind: kinds[rng.IntN(len(kinds))], gateway: rng.IntN(len(l.s.gateways)), start: time.Now()}
	o.sub = fmt.Sprintf("%s-s%d", l.s.run, n)
	o.marker = fmt.Sprintf("mk_%s_s%d_", l.s.run, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tok := l.s.token(o.sub, groupName)
	switch o.kind {
	case "psql":
		o.err = l.psql(ctx, o, tok)
	case "pgbench":
		o.err = l.pgbench(ctx, o, tok)
	case "pgx":
		o.err = l.pgx(ctx, o, tok)
	case "ssh-exec":
		o.err = l.ssh(ctx, o, tok, "", fmt.Sprintf("echo %s1 >> %s/ran.log && echo %s2 >> %s/ran.log && echo done", o.marker, l.s.sshDir, o.marker, l.s.sshDir))
	case "ssh-shell":
		o.err = l.ssh(ctx, o, tok, fmt.Sprintf("echo %s1 >> %s/ran.log\necho %s2 >> %s/ran.log\nexit\n", o.marker, l.s.sshDir, o.marker, l.s.sshDir), "")
	case "scp":
		o.err = l.scp(ctx, o, tok)
	}
	o.end = time.Now()
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
}

func (l *load) pgConn(o outcome) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=%s sslmode=require connect_timeout=30",
		l.s.pgPorts[o.gateway], pgTarget, o.sub)
}

func (l *load) psql(ctx context.Context, o outcome, tok string) error {
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", l.pgConn(o)}
	for i := 1; i <= 3; i++ {
		// An address in the statement: the processors mask and sign these frames.
		args = append(args, "-c", fmt.Sprintf("select '%s%d' as m, %d + 1, 'agent%d@chaos.example.net' as email", o.marker, i, i, i))
	}
	return l.command(ctx, filepath.Join(l.s.pg.Bin, "psql"), args, "PGPASSWORD="+tok)
}

func (l *load) pgbench(ctx context.Context, o outcome, tok string) error {
	script := filepath.Join(l.s.dir, o.sub+".sql")
	if err := os.WriteFile(script, []byte(fmt.Sprintf("select '%s1' as m, :client_id;\n", o.marker)), 0o644); err != nil {
		return err
	}
	defer os.Remove(script)
	return l.command(ctx, filepath.Join(l.s.pg.Bin, "pgbench"),
		[]string{"-n", "-M", "prepared", "-c", "2", "-t", "5", "-f", script, l.pgConn(o)}, "PGPASSWORD="+tok)
}

// pgx: a prepared statement executed three times, then a pipeline of three.
func (l *load) pgx(ctx context.Context, o outcome, tok string) error {
	cfg, err := pgx.ParseConfig(l.pgConn(o) + " password=" + tok)
	if err != nil {
		return err
	}
	cfg.TLSConfig.InsecureSkipVerify = true // the gateway's generated certificate
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Prepare(ctx, "q", fmt.Sprintf("select '%s1' as m, $1::int", o.marker)); err != nil {
		return err
	}
	for i := range 3 {
		if _, err := conn.Exec(ctx, "q", i); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	for i := range 3 {
		b.Queue(fmt.Sprintf("select '%s2' as m, $1::int", o.marker), i)
	}
	return conn.SendBatch(ctx, b).Close()
}

func (l *load) sshArgs(o outcome, port string) []string {
	return []string{port, strconv.Itoa(l.s.sshPorts[o.gateway]), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "ConnectTimeout=30"}
}

func (l *load) sshEnv(tok string) []string {
	return []string{"TAPLINE_TOKEN=" + tok, "SSH_ASKPASS=" + l.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}
}

// ssh runs command (exec) or, with stdin, an interactive shell on a pty.
func (l *load) ssh(ctx context.Context, o outcome, tok, stdin, command string) error {
	args := l.sshArgs(o, "-p")
	user := l.s.target.User + "+" + sshTarget + "@127.0.0.1"
	if command != "" {
		return l.command(ctx, "ssh", append(args, user, command), l.sshEnv(tok)...)
	}
	cmd := exec.CommandContext(ctx, "ssh", append(args, "-tt", user)...)
	cmd.Env = append(os.Environ(), l.sshEnv(tok)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLine(out))
	}
	return nil
}

func (l *load) scp(ctx context.Context, o outcome, tok string) error {
	args := append(l.sshArgs(o, "-P"), l.scpFile, l.s.target.User+"+"+sshTarget+"@127.0.0.1:"+l.s.sshDir+"/"+o.sub+".bin")
	return l.command(ctx, "scp", args, l.sshEnv(tok)...)
}

func (l *load) command(ctx context.Context, bin string, args []string, env ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(bin), err, lastLine(out))
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
