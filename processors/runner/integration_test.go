package runner

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// buildTapline builds the tapline binary for subprocess tests.
func buildTapline(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tapline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tapline")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// proc is a `tapline process` subprocess.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func startProcess(t *testing.T, bin, config, logPath string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "process", "--config", config, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() {
		p.done <- cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		b, _ := os.ReadFile(p.log)
		return fmt.Errorf("tapline process exited: %v\n%s", err, tail(string(b), 3000))
	default:
		return nil
	}
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			b, _ := os.ReadFile(p.log)
			t.Errorf("tapline process: %v\n%s", err, tail(string(b), 3000))
		}
	case <-time.After(60 * time.Second):
		t.Error("tapline process did not stop on SIGTERM")
		p.kill()
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func writeConfig(t *testing.T, brokers []string, name, raw string) (string, *Config) {
	t.Helper()
	y := fmt.Sprintf(`kafka:
  brokers: [%[3]s]
  group: %[1]s-group
  transactional_id: %[1]s-txn
  max_poll_records: 40
  session_timeout: 6s
topics: {raw: %[2]s, frames: %[1]s.frames, commands: %[1]s.commands, sessions: %[1]s.sessions, audit: %[1]s.audit, audit_ocsf: %[1]s.ocsf, state: %[1]s.state, dead_letter: %[1]s.deadletter}
trusted_gateway_keys: [%[4]x, %[5]x]
signing_key: %[6]s
`, name, raw, strings.Join(brokers, ", "), []byte(sessiontest.NewKey(1).Public().(ed25519.PublicKey)),
		[]byte(sessiontest.NewKey(3).Public().(ed25519.PublicKey)), processorKeyFile(t))
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(y), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// 100 interleaved sessions stream in while the processor is killed with SIGKILL
// three times and restarted; what it committed equals what an uninterrupted
// processor commits: no frame, command, summary, audit record or OCSF event lost or
// duplicated, and no planted secret anywhere downstream.
func TestKilledProcessorIsExactlyOnce(t *testing.T) {
	brokers := testenv.Kafka(t)
	bin := buildTapline(t)
	run := fmt.Sprintf("eos-%d-%d", time.Now().Unix(), rand.IntN(1_000_000))
	raw := run + ".raw"
	t.Cleanup(func() { deleteTopicsWithPrefix(t, brokers, run) })
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, raw); err != nil {
		t.Fatal(err)
	}
	sessions := fixtureSessions(100, time.Now().Add(-time.Minute))
	for i := range 20 {
		sessions = append(sessions, fragmentedFixture(i, time.Now().Add(-time.Minute)))
	}
	frames := interleave(sessions, uint64(time.Now().UnixNano()))
	t.Logf("%d sessions, %d frames, topics %s.*", len(sessions), len(frames), run)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	logDir := t.TempDir()
	cfgPathB, cfgB := writeConfig(t, brokers, run+"-b", raw)
	p := startProcess(t, bin, cfgPathB, filepath.Join(logDir, "b.log"))

	// Stream the frames in chunks. Each incarnation of the processor is killed right
	// after a chunk lands, once it has committed something of its own, so the kill
	// falls while it works through the chunk.
	const chunks = 60
	per := (len(frames) + chunks - 1) / chunks
	chunk := 0
	next := func() bool {
		lo, hi := chunk*per, min((chunk+1)*per, len(frames))
		chunk++
		if lo >= hi {
			return false
		}
		produceFrames(t, cl, raw, frames[lo:hi])
		return true
	}
	committedBefore := int64(0)
	next()
	for kill := 0; kill < 3; kill++ {
		// Wait for this incarnation to join and commit work of its own (the chunk
		// produced before the last kill is still waiting for it).
		deadline := time.Now().Add(90 * time.Second)
		for committedTotal(t, adm, cfgB.Kafka.Group, raw) <= committedBefore {
			if err := p.alive(); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("the restarted processor made no progress")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !next() {
			t.Fatal("ran out of frames before the third kill")
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		p.kill()
		committed := committedTotal(t, adm, cfgB.Kafka.Group, raw)
		t.Logf("SIGKILL %d after chunk %d: %d frames produced, %d committed", kill+1, chunk, min(chunk*per, len(frames)), committed)
		committedBefore = committed
		p = startProcess(t, bin, cfgPathB, filepath.Join(logDir, "b.log"))
		next()
	}
	for next() {
		time.Sleep(20 * time.Millisecond)
	}
	waitCaughtUp(t, brokers, cfgB.Kafka.Group, raw, 3*time.Minute, p.alive)
	p.stop(t)
	if testing.Verbose() {
		b, _ := os.ReadFile(filepath.Join(logDir, "b.log"))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "state loaded") || strings.Contains(l, "processing") || strings.Contains(l, "aborted") {
				t.Log(l)
			}
		}
	}

	cfgPathA, cfgA := writeConfig(t, brokers, run+"-a", raw)
	a := startProcess(t, bin, cfgPathA, filepath.Join(logDir, "a.log"))
	waitCaughtUp(t, brokers, cfgA.Kafka.Group, raw, 3*time.Minute, a.alive)
	a.stop(t)

	outA, outB := collect(t, brokers, cfgA.Topics), collect(t, brokers, cfgB.Topics)
	if d := diff(outA, outB); len(d) > 0 {
		t.Errorf("killed run differs from the uninterrupted one (%d differences), first: %v", len(d), d[:min(10, len(d))])
	}
	for name, o := range map[string]*outputs{"uninterrupted": outA, "killed": outB} {
		if len(o.dups) > 0 {
			t.Errorf("%s: duplicates: %v", name, o.dups[:min(10, len(o.dups))])
		}
		if l := o.leaks(); len(l) > 0 {
			t.Errorf("%s: planted secrets in the outputs: %v", name, l)
		}
		if len(o.frames) != len(frames) {
			t.Errorf("%s: %d frames out of %d", name, len(o.frames), len(frames))
		}
	}
	checkSummaries(t, outB, sessions)
	t.Logf("compared %d frames, %d commands, %d summaries, %d audit records, %d OCSF events", len(outB.frames), len(outB.commands), len(outB.sessions), len(outB.audit), len(outB.ocsf))
	if len(outB.commands) < 100 {
		t.Errorf("only %d commands", len(outB.commands))
	}
	// The state topic must hold no unmasked secret either: it is internal, but it is
	// downstream of the raw topic.
	for _, r := range readCommitted(t, brokers, cfgB.Topics.State) {
		for _, s := range planted {
			if strings.Contains(string(r.Value), s) {
				t.Errorf("state topic holds planted secret %q", s)
			}
		}
	}
}

// committedTotal sums the group's committed offsets on the raw topic.
func committedTotal(t *testing.T, adm *kadm.Client, group, raw string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == raw && o.Err == nil {
			n += o.At
		}
	})
	return n
}

// deleteTopicsWithPrefix removes a run's topics from the shared broker (each
// run makes about thirty partitions).
func deleteTopicsWithPrefix(tb testing.TB, brokers []string, prefix string) {
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		tb.Logf("deleting topics %s*: %v", prefix, err)
		return
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testenv.DeleteTopicsWithPrefix(ctx, adm, prefix); err != nil {
		tb.Logf("deleting topics %s*: %v", prefix, err)
	}
}
