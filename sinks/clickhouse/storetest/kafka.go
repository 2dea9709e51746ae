package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// RepoRoot is the module's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Kafka is a client on the test broker with helpers for the sink's topics.
type Kafka struct {
	Brokers []string
	Client  *kgo.Client
	Admin   *kadm.Client
	Topics  [3]string // frames, commands, sessions
}

// NewKafka connects to brokers and creates three fresh topics with the given
// partition count, deleted when the test ends.
func NewKafka(t testing.TB, brokers []string, partitions int32) *Kafka {
	t.Helper()
	k := &Kafka{Brokers: brokers}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ProducerBatchMaxBytes(4<<20),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	k.Client, k.Admin = cl, kadm.NewClient(cl)
	prefix := fmt.Sprintf("sinktest-%d-%d.", time.Now().UnixNano(), rand.Uint32())
	for i, name := range []string{"frames", "commands", "sessions"} {
		k.Topics[i] = prefix + name
	}
	ctx := context.Background()
	res, err := k.Admin.CreateTopics(ctx, partitions, 1, map[string]*string{"max.message.bytes": ptr("8388608")}, k.Topics[:]...)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	t.Cleanup(func() {
		k.Admin.DeleteTopics(context.Background(), k.Topics[:]...) //nolint:errcheck // best effort
		cl.Close()
	})
	return k
}

func ptr[T any](v T) *T { return &v }

// Produce writes the recordings' frames, commands and sessions, keyed by session id,
// and returns how many records it wrote.
func (k *Kafka) Produce(t testing.TB, rs ...Recording) int {
	t.Helper()
	var recs []*kgo.Record
	add := func(topic int, id string, v []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: k.Topics[topic], Key: []byte(id), Value: v})
	}
	for _, r := range rs {
		for i := range r.Frames {
			v, err := schemas.FrameCodec().Encode(&r.Frames[i])
			add(0, r.ID, v, err)
		}
		for i := range r.Commands {
			v, err := schemas.CommandCodec().Encode(&r.Commands[i])
			add(1, r.ID, v, err)
		}
		for i := range r.Sessions {
			v, err := schemas.SessionCodec().Encode(&r.Sessions[i])
			add(2, r.ID, v, err)
		}
	}
	if err := k.Client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// Offsets returns the sum of the group's committed offsets and of the topics' end
// offsets.
func (k *Kafka) Offsets(t testing.TB, group string) (committed, end int64) {
	t.Helper()
	committed, end, err := k.offsets(group)
	if err != nil {
		t.Fatal(err)
	}
	return committed, end
}

func (k *Kafka) offsets(group string) (committed, end int64, err error) {
	ctx := context.Background()
	ends, err := k.Admin.ListEndOffsets(ctx, k.Topics[:]...)
	if err != nil {
		return 0, 0, err
	}
	offs, err := k.Admin.FetchOffsets(ctx, group)
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(o kadm.ListedOffset) {
		end += o.Offset
		if c, ok := offs.Lookup(o.Topic, o.Partition); ok {
			committed += c.At
		}
	})
	return committed, end, nil
}

// WaitCommitted waits until cond(committed, end) holds. Until the group exists
// the broker answers with an error, which counts as not yet.
func (k *Kafka) WaitCommitted(t testing.TB, group string, timeout time.Duration, cond func(committed, end int64) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, e, err := k.offsets(group)
		if err == nil && cond(c, e) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: committed %d of %d offsets after %v (last error: %v)", group, c, e, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var builds sync.Map // tags → *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// BuildTapline builds cmd/tapline (once per test binary and tags) and returns the
// binary's path.
func BuildTapline(t testing.TB, tags string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(tags, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		// One place per tag set, replaced by rename, so runs do not pile up binaries.
		dir := filepath.Join(os.TempDir(), "tapline-sinktest")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		name := "tapline-nochdb"
		if tags != "" {
			name = "tapline-" + strings.ReplaceAll(tags, ",", "-")
		}
		b.path = filepath.Join(dir, name)
		tmp := fmt.Sprintf("%s.%d", b.path, os.Getpid())
		cmd := exec.Command(goTool(), "build", "-tags", tags, "-o", tmp, "./cmd/tapline")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/tapline: %v\n%s", err, out)
			return
		}
		b.err = os.Rename(tmp, b.path)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// GoTool is the go command that runs the tests.
func GoTool() string { return goTool() }

// RSS returns a process's resident set size in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// Process is a subprocess whose output goes to a log file, shown when the test fails.
type Process struct {
	Cmd *exec.Cmd
	Log string
}

// Start runs bin with args and extra environment.
func Start(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	log := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &Process{Cmd: cmd, Log: log}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() //nolint:errcheck // may have exited
			cmd.Wait()         //nolint:errcheck // killed
		}
		if t.Failed() {
			out, _ := os.ReadFile(log)
			t.Logf("%s output:\n%s", name, tail(string(out), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
