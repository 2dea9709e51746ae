package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaBroker is a private single-node Kafka (KRaft, broker and controller in
// one JVM) that one test owns, for tests where a broker goes away and comes
// back without disturbing the shared broker other packages use. Stop and Start
// keep the port and the data directory, so clients reconnect to the same
// broker and find their topics and records again.
//
// The broker is a child of the test binary: t.Cleanup stops it, and it is
// killed if the test binary dies (Linux parent-death signal).
type KafkaBroker struct {
	t          testing.TB
	script     string
	runtimeDir string
	dir        string
	port       int
	cport      int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartTimeout bounds how long PrivateKafka and Start wait for the broker.
var StartTimeout = 90 * time.Second

// PrivateKafka starts a private broker on free loopback ports (about 1.5 s
// with the class-data-sharing archive `make services-up` makes) and stops it
// at the end of the test. It needs the Kafka jars that `make services-up`
// fetched; it does not use the shared broker.
func PrivateKafka(t testing.TB) *KafkaBroker {
	t.Helper()
	v := need(t, "kafka", "TAPLINE_KAFKA_RUNTIME")
	script, ok := Lookup("TAPLINE_SERVICES_SCRIPT")
	if !ok {
		root, err := RepoRoot()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		script = filepath.Join(root, "integration", "services.sh")
	}
	if _, err := os.Stat(script); err != nil {
		unavailable(t, "integration: needs kafka: %v; run `%s`", err, Hint)
	}
	b := &KafkaBroker{t: t, script: script, runtimeDir: v[0], dir: t.TempDir(), port: FreePort(t), cport: FreePort(t)}
	t.Cleanup(func() { b.stop(syscall.SIGTERM, 15*time.Second) })
	b.Start()
	return b
}

// Addr is the broker's host:port.
func (b *KafkaBroker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Brokers is []string{Addr()}, for kgo.SeedBrokers.
func (b *KafkaBroker) Brokers() []string { return []string{b.Addr()} }

// Dir holds the broker's data (data/), config and log (kafka.log).
func (b *KafkaBroker) Dir() string { return b.dir }

// LogPath is the broker's log.
func (b *KafkaBroker) LogPath() string { return filepath.Join(b.dir, "kafka.log") }

// Running reports whether the broker process is alive.
func (b *KafkaBroker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Start starts the broker (again) on the same port and data directory and
// waits until a metadata request lists it. A no-op when it is running.
func (b *KafkaBroker) Start() {
	b.t.Helper()
	if b.Running() {
		return
	}
	errf, err := os.OpenFile(filepath.Join(b.dir, "run.stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatalf("testenv: PrivateKafka: %v", err)
	}
	defer errf.Close()
	// services.sh execs java in place of the shell, so cmd's pid is the broker's.
	cmd := exec.Command("bash", b.script, "kafka-instance", "run", b.dir,
		strconv.Itoa(b.port), strconv.Itoa(b.cport))
	cmd.Env = append(os.Environ(), "TAPLINE_KAFKA_RUNTIME="+b.runtimeDir)
	cmd.Stdout = errf
	cmd.Stderr = errf
	cmd.SysProcAttr = childAttrs()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("testenv: PrivateKafka: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()

	if err := b.waitReady(done); err != nil {
		b.stop(syscall.SIGKILL, 5*time.Second)
		b.t.Fatalf("testenv: private Kafka on %s: %v\n%s", b.Addr(), err, b.logTail())
	}
	b.t.Logf("testenv: private Kafka up on %s in %s (log %s)", b.Addr(), time.Since(start).Round(time.Millisecond), b.LogPath())
}

func (b *KafkaBroker) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(StartTimeout)
	// Wait for the listener before creating a client: fewer wasted dials.
	for {
		select {
		case <-done:
			return errors.New("broker exited while starting")
		default:
		}
		if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port not open after %s", StartTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("broker exited while starting")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := adm.BrokerMetadata(ctx)
		cancel()
		if err == nil && len(md.Brokers) > 0 && md.Controller >= 0 {
			// Listed is not yet able to host partitions: a loaded machine can
			// take seconds more, so wait until a topic of our own has a leader.
			return createTopic(adm, "tapline.ready", 1, deadline)
		}
		if err == nil {
			err = errors.New("metadata lists no broker or controller yet")
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no metadata after %s: %v", StartTimeout, last)
}

// Stop shuts the broker down cleanly (SIGTERM; SIGKILL after 30 s) and waits
// for it to exit. Clients see connection refused until Start.
func (b *KafkaBroker) Stop() {
	b.t.Helper()
	b.stop(syscall.SIGTERM, 30*time.Second)
}

// Kill ends the broker at once (SIGKILL), as a crash would.
func (b *KafkaBroker) Kill() {
	b.t.Helper()
	b.stop(syscall.SIGKILL, 10*time.Second)
}

func (b *KafkaBroker) stop(sig syscall.Signal, grace time.Duration) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (b *KafkaBroker) logTail() string {
	var out strings.Builder
	for _, f := range []string{filepath.Join(b.dir, "run.stderr"), b.LogPath()} {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Fprintf(&out, "--- last lines of %s:\n%s\n", f, strings.Join(lines, "\n"))
	}
	return out.String()
}

// CreateTopic creates a topic (an existing one is fine) and waits until every
// partition has a leader, so the first produce does not race leader election.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := createTopic(kadm.NewClient(cl), topic, partitions, time.Now().Add(StartTimeout)); err != nil {
		t.Fatalf("topic %s: %v", topic, err)
	}
}

// DeleteTopicsWithPrefix deletes the topics whose names start with prefix: a
// run's topics on a long-lived broker, where they would pile up (a broker
// holding thousands of partitions takes minutes to load their logs after an
// unclean stop).
func DeleteTopicsWithPrefix(ctx context.Context, adm *kadm.Client, prefix string) error {
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return err
	}
	var mine []string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, prefix) {
			mine = append(mine, name)
		}
	}
	_, err = adm.DeleteTopics(ctx, mine...)
	return err
}

func createTopic(adm *kadm.Client, topic string, partitions int32, deadline time.Time) error {
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			err = leadersElected(ctx, adm, topic)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", StartTimeout, last)
}

func leadersElected(ctx context.Context, adm *kadm.Client, topic string) error {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return fmt.Errorf("topic %s not in metadata yet (%v)", topic, td.Err)
	}
	for _, p := range td.Partitions {
		if p.Leader < 0 || p.Err != nil {
			return fmt.Errorf("partition %d has no leader yet", p.Partition)
		}
	}
	return nil
}
