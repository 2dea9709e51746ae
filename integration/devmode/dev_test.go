package devmode

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

type devRun struct {
	t                      *testing.T
	bin, devBin, data      string
	env                    []string
	pg, sshPort, api, kafk int
	cmd                    *exec.Cmd
	log                    *bytes.Buffer
}

func TestDevSurvivesRestartWithReplayableVerifiedSessions(t *testing.T) {
	pg := testenv.Postgres(t)
	target := testenv.SSH(t)
	lib := testenv.CHDBLib(t)
	d := &devRun{t: t, data: t.TempDir(), log: &bytes.Buffer{},
		pg: testenv.FreePort(t), sshPort: testenv.FreePort(t), api: testenv.FreePort(t), kafk: testenv.FreePort(t)}
	d.build()
	d.env = append(os.Environ(), "CHDB_LIB_PATH="+lib)

	d.start()
	gwToken := strings.TrimSpace(d.client("token", "--data-dir", d.data, "--sub", "alice", "--groups", "dev"))
	token := strings.TrimSpace(d.client("token", "--for", "query", "--data-dir", d.data, "--sub", "alice", "--groups", "auditors"))
	// As the banner says: the gateway's certificate from `tapline ca`, verified.
	ca := filepath.Join(d.data, "gateway-ca.pem")
	if err := os.WriteFile(ca, []byte(d.client("ca", "--data-dir", d.data)), 0o600); err != nil {
		t.Fatal(err)
	}
	psql := exec.Command(filepath.Join(pg.Bin, "psql"), "-X", "-A", "-t",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo user=alice sslmode=verify-full", d.pg),
		"-c", "select 40 + 2 as answer")
	psql.Env = append(os.Environ(), "PGPASSWORD="+gwToken, "PGSSLROOTCERT="+ca, "PGGSSENCMODE=disable")
	out, err := psql.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql through tapline dev: %v\n%s\n%s", err, out, d.log)
	}
	sshOut := d.ssh(gwToken, target.User+"+demo-box", "echo dev-ssh-$((6*7))")
	if strings.TrimSpace(sshOut) != "dev-ssh-42" {
		t.Fatalf("ssh through tapline dev printed %q", sshOut)
	}
	ids := d.waitSessions(token, 2)
	d.stop()

	d.start()
	defer d.stop()
	after := d.waitSessions(token, 2)
	for id := range ids {
		if !after[id] {
			t.Fatalf("session %s missing after restart", id)
		}
	}
	var sawSQL, sawSSH bool
	for id := range ids {
		v := d.clientEnv(token, "verify", "--api", d.apiURL(), id)
		if !strings.Contains(v, ": OK") {
			t.Errorf("verify %s:\n%s", id, v)
		}
		r := d.clientEnv(token, "replay", "--api", d.apiURL(), "--format", "text", id)
		sawSQL = sawSQL || strings.Contains(r, "select 40 + 2 as answer") && strings.Contains(r, "42")
		sawSSH = sawSSH || strings.Contains(r, "dev-ssh-42")
	}
	if !sawSQL || !sawSSH {
		t.Fatalf("replays lack the psql statement (%v) or the ssh output (%v)", sawSQL, sawSSH)
	}
}

func (d *devRun) build() {
	dir := d.t.TempDir()
	d.bin, d.devBin = filepath.Join(dir, "tapline"), filepath.Join(dir, "tapline-dev")
	root, err := testenv.RepoRoot()
	if err != nil {
		d.t.Fatal(err)
	}
	for _, b := range [][]string{{"build", "-o", d.bin, "./cmd/tapline"}, {"build", "-tags", "chdb", "-o", d.devBin, "./cmd/tapline"}} {
		cmd := exec.Command("go", b...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			d.t.Fatalf("go %v: %v\n%s", b, err, out)
		}
	}
}

func (d *devRun) apiURL() string { return "http://127.0.0.1:" + strconv.Itoa(d.api) }

func (d *devRun) start() {
	d.cmd = exec.Command(d.devBin, "dev", "--data-dir", d.data, "--services-env", testenv.EnvFile(),
		"--kafka-port", strconv.Itoa(d.kafk), "--pg-port", strconv.Itoa(d.pg),
		"--ssh-port", strconv.Itoa(d.sshPort), "--api-port", strconv.Itoa(d.api))
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// Never outlive the test, whatever path it ends on.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	cmd := d.cmd
	d.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(d.apiURL() + "/api/v1/openapi.yaml"); err == nil {
			r.Body.Close()
			if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.pg)); err == nil {
				c.Close()
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.t.Fatalf("tapline dev did not come up in 60s:\n%s", d.log)
}

// stop sends SIGINT, as Ctrl-C would, and expects a clean exit.
func (d *devRun) stop() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("tapline dev exited with %v after SIGINT:\n%s", err, d.log)
		}
	case <-time.After(90 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Fatalf("tapline dev did not stop within 90s of SIGINT:\n%s", d.log)
	}
}

func (d *devRun) client(args ...string) string {
	return d.clientEnv("", args...)
}

func (d *devRun) clientEnv(token string, args ...string) string {
	cmd := exec.Command(d.bin, args...)
	cmd.Env = append(os.Environ(), "TAPLINE_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil && args[0] != "verify" {
		d.t.Fatalf("tapline %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// ssh runs one command through the gateway with OpenSSH, the token as password.
func (d *devRun) ssh(token, user, command string) string {
	askpass := filepath.Join(d.t.TempDir(), "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$TAPLINE_TOKEN\"\n"), 0o700); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-p", strconv.Itoa(d.sshPort), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "PreferredAuthentications=password,keyboard-interactive",
		user+"@127.0.0.1", command)
	cmd.Env = append(os.Environ(), "TAPLINE_TOKEN="+token, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("ssh %s %q: %v\n%s\n%s", user, command, err, out, d.log)
	}
	return string(out)
}

// waitSessions polls `tapline sessions` until n ended sessions are listed.
func (d *devRun) waitSessions(token string, n int) map[string]bool {
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		last = d.clientEnv(token, "sessions", "--api", d.apiURL())
		ids := map[string]bool{}
		for _, line := range strings.Split(last, "\n")[1:] {
			f := strings.Fields(line)
			if len(f) >= 7 && f[6] == "ended" {
				ids[f[2]] = true
			}
		}
		if len(ids) >= n {
			return ids
		}
		time.Sleep(500 * time.Millisecond)
	}
	d.t.Fatalf("wanted %d ended sessions, `tapline sessions` says:\n%s\n%s", n, last, d.log)
	return nil
}
