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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

type devRun struct {
	t                 *testing.T
	bin, devBin, data string
	env               []string
	// Ports as the banner printed them: dev starts with every port 0, as
	// `tapline dev --pg-port 0 ...` would, and the banner must name the bound ones.
	pg, sshPort, http, api int
	kube                   bool // the banner must name the Kubernetes demo target too
	kubePort               int  // its port (the HTTP listener's)
	cmd                    *exec.Cmd
	log                    *syncBuffer
}

func TestDevSurvivesRestartWithReplayableVerifiedSessions(t *testing.T) {
	pg := testenv.Postgres(t)
	target := testenv.SSH(t)
	testenv.NginxTarget(t)
	lib := testenv.CHDBLib(t)
	d := &devRun{t: t, data: t.TempDir(), log: &syncBuffer{}}
	// tapline dev adds the test cluster when it runs; make dev does not start it.
	var kube testenv.Kube
	if _, listed := testenv.Lookup("TAPLINE_KUBE_SERVER"); listed || os.Getenv("CI") != "" {
		kube, d.kube = testenv.Kubernetes(t), true
	}
	d.bin, d.devBin = buildBinaries(t)
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
	// As the banner says: curl with the same certificate and the token as bearer.
	curl := exec.Command("curl", "-sS", "--fail-with-body", "--cacert", ca, "-H", "Authorization: Bearer "+gwToken,
		fmt.Sprintf("https://127.0.0.1:%d/demo-web/hello.txt", d.http))
	if out, err := curl.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "hello from nginx" {
		t.Fatalf("curl through tapline dev: %v\n%s\n%s", err, out, d.log)
	}
	sessions := 3
	if d.kube {
		kubectl := exec.Command(kube.Kubectl, "--server", fmt.Sprintf("https://127.0.0.1:%d/demo-cluster", d.kubePort),
			"--certificate-authority", ca, "--token", gwToken, "-n", kube.Namespace, "get", "pods", "-o", "name")
		if out, err := kubectl.CombinedOutput(); err != nil || !strings.Contains(string(out), "pod/"+kube.Pod) {
			t.Fatalf("kubectl through tapline dev: %v\n%s\n%s", err, out, d.log)
		}
		sessions++
	}
	ids := d.waitSessions(token, sessions)
	d.stop()

	d.start()
	defer d.stop()
	after := d.waitSessions(token, sessions)
	for id := range ids {
		if !after[id] {
			t.Fatalf("session %s missing after restart", id)
		}
	}
	var sawSQL, sawSSH, sawHTTP, sawKube bool
	for id := range ids {
		v := d.clientEnv(token, "verify", "--api", d.apiURL(), id)
		if !strings.Contains(v, ": OK") {
			t.Errorf("verify %s:\n%s", id, v)
		}
		r := d.clientEnv(token, "replay", "--api", d.apiURL(), "--format", "text", id)
		sawSQL = sawSQL || strings.Contains(r, "select 40 + 2 as answer") && strings.Contains(r, "42")
		sawSSH = sawSSH || strings.Contains(r, "dev-ssh-42")
		sawHTTP = sawHTTP || strings.Contains(r, "> GET /hello.txt") && strings.Contains(r, "hello from nginx")
		sawKube = sawKube || d.kube && strings.Contains(r, "kubectl get pods -n "+kube.Namespace)
	}
	if d.kube && !sawKube {
		t.Errorf("no replay shows kubectl's pod list call")
	}
	if !sawSQL || !sawSSH || !sawHTTP {
		t.Fatalf("replays lack the psql statement (%v), the ssh output (%v) or the HTTP exchange (%v)", sawSQL, sawSSH, sawHTTP)
	}
}

var (
	buildOnce          sync.Once
	buildDir, buildErr string
)

// buildBinaries builds bin/tapline and bin/tapline-dev (tag chdb) once per test
// binary; TestMain removes them.
func buildBinaries(t *testing.T) (bin, devBin string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tapline-devmode-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		buildDir = dir
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err.Error()
			return
		}
		for _, b := range [][]string{{"build", "-o", filepath.Join(dir, "tapline"), "./cmd/tapline"},
			{"build", "-tags", "chdb", "-o", filepath.Join(dir, "tapline-dev"), "./cmd/tapline"}} {
			cmd := exec.Command("go", b...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Sprintf("go %v: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "tapline"), filepath.Join(buildDir, "tapline-dev")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// syncBuffer is the output of a dev process, read by the test while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Banner lines that name a bound port.
var (
	bannerPG   = regexp.MustCompile(`psql: .*host=127\.0\.0\.1 port=(\d+) `)
	bannerSSH  = regexp.MustCompile(`ssh: +ssh -p (\d+) `)
	bannerWeb  = regexp.MustCompile(`curl: .*https://127\.0\.0\.1:(\d+)/demo-web/`)
	bannerKube = regexp.MustCompile(`kubectl: .*https://127\.0\.0\.1:(\d+)/demo-cluster `)
	bannerAPI  = regexp.MustCompile(`API: +http://127\.0\.0\.1:(\d+)/api/v1`)
)

func (d *devRun) apiURL() string { return "http://127.0.0.1:" + strconv.Itoa(d.api) }

func (d *devRun) start() {
	d.cmd = exec.Command(d.devBin, "dev", "--data-dir", d.data, "--services-env", testenv.EnvFile(),
		"--kafka-port", "0", "--pg-port", "0", "--ssh-port", "0", "--http-port", "0", "--api-port", "0")
	d.cmd.Env = d.env
	start := len(d.log.String()) // the banner of this start, not the previous one
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
	for time.Now().Before(deadline) && !d.readBanner(d.log.String()[start:]) {
		time.Sleep(200 * time.Millisecond)
	}
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

// readBanner takes the ports from a complete banner; false until it is printed.
func (d *devRun) readBanner(out string) bool {
	if !strings.Contains(out, "processor signing key:") {
		return false
	}
	ports := map[*regexp.Regexp]*int{bannerPG: &d.pg, bannerSSH: &d.sshPort, bannerWeb: &d.http, bannerAPI: &d.api}
	if d.kube {
		ports[bannerKube] = &d.kubePort
	}
	for re, dst := range ports {
		m := re.FindStringSubmatch(out)
		if m == nil {
			d.t.Fatalf("banner lacks %s:\n%s", re, out)
		}
		*dst, _ = strconv.Atoi(m[1])
		if *dst == 0 {
			d.t.Fatalf("banner names port 0 (%s):\n%s", re, out)
		}
	}
	return true
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
