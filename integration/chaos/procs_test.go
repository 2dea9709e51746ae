package chaos

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

// proc is one tapline role run as its own process, restartable after a kill.
type proc struct {
	name string // e.g. gateway-1
	role string // gateway, process, sink, query
	args []string
	env  []string
	logf string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	peakRSS int64 // bytes, highest VmHWM seen over all incarnations
}

// roleEnv is the environment of a role: the caller's TAPLINE_* variables would
// override the role's config file, so they are dropped.
func roleEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TAPLINE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (p *proc) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "---- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// signal sends sig and waits for the exit (after grace, SIGKILL).
func (p *proc) signal(sig syscall.Signal, grace time.Duration) {
	p.sampleRSS()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, time.Minute) }
func (p *proc) stop() { p.signal(syscall.SIGTERM, time.Minute) }

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// sampleRSS records the process's peak resident set (VmHWM).
func (p *proc) sampleRSS() {
	pid := p.pid()
	if pid == 0 {
		return
	}
	if v := vmHWM(pid); v > 0 {
		p.mu.Lock()
		p.peakRSS = max(p.peakRSS, v)
		p.mu.Unlock()
	}
}

func (p *proc) peak() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peakRSS
}

// vmHWM reads a process's peak resident set in bytes; 0 when it is gone.
func vmHWM(pid int) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// build compiles the tapline binary for the campaign into dir.
func build(dir string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tapline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tapline")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tapline: %v\n%s", err, out)
	}
	return bin, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
