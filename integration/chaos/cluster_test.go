package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/integration/testenv"
)

// cluster is the three-broker Kafka of `services.sh up kafka-cluster`. Its
// nodes are daemons of the services script; the campaign kills, pauses and
// restarts them through their pid files and the script.
type cluster struct {
	script  string
	state   string // the services state dir the cluster lives in
	dir     string
	brokers []string
}

// kafkaCluster brings the cluster up (idempotent) in the services state dir
// of the test services and returns it.
func kafkaCluster(t testing.TB) *cluster {
	t.Helper()
	testenv.Kafka(t) // skips (or fails under CI) without the test services
	state, ok := testenv.Lookup("TAPLINE_SERVICES_DIR")
	if !ok {
		t.Fatalf("TAPLINE_SERVICES_DIR missing from %s; run `%s`", testenv.EnvFile(), testenv.Hint)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{script: filepath.Join(root, "integration", "services.sh"), state: state}
	c.dir = filepath.Join(state, "kafka-cluster")
	if !c.running() {
		// Started for this test, stopped after it: three brokers would otherwise
		// take memory and CPU from every test that runs after.
		t.Cleanup(func() { c.services("down", "kafka-cluster") })
	}
	// `up` is idempotent: on a machine busy enough that three JVMs do not come
	// up within its wait, a second call waits again for the nodes it started.
	var out []byte
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, c.script, "up", "kafka-cluster")
		cmd.Env = append(os.Environ(), "TAPLINE_SERVICES_DIR="+state)
		out, err = cmd.CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("services.sh up kafka-cluster: %v\n%s", err, out)
		}
		t.Logf("services.sh up kafka-cluster: %v; waiting again\n%s", err, out)
	}
	env, err := testenv.ParseEnvFile(filepath.Join(state, "parts", "kafka-cluster.env"))
	if err != nil {
		t.Fatal(err)
	}
	c.brokers = strings.Split(env["TAPLINE_KAFKA_CLUSTER_BROKERS"], ",")
	c.dir = env["TAPLINE_KAFKA_CLUSTER_DIR"]
	if len(c.brokers) != 3 || c.dir == "" {
		t.Fatalf("kafka-cluster env: %v", env)
	}
	// A broker left paused or down by an earlier failed run is brought back.
	for n := 1; n <= 3; n++ {
		c.signal(n, syscall.SIGCONT)
	}
	return c
}

// running: all three nodes have a live process.
func (c *cluster) running() bool {
	for n := 1; n <= 3; n++ {
		if p := c.pid(n); p <= 0 || syscall.Kill(p, 0) != nil {
			return false
		}
	}
	return true
}

func (c *cluster) services(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Env = append(os.Environ(), "TAPLINE_SERVICES_DIR="+c.state)
	_ = cmd.Run()
}

func (c *cluster) pid(n int) int {
	b, err := os.ReadFile(filepath.Join(c.dir, "node"+strconv.Itoa(n), "pid"))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

func (c *cluster) signal(n int, sig syscall.Signal) {
	if p := c.pid(n); p > 0 {
		_ = syscall.Kill(p, sig)
	}
}

// kill SIGKILLs broker n and waits until it is gone.
func (c *cluster) kill(n int) error {
	p := c.pid(n)
	if p <= 0 {
		return fmt.Errorf("broker %d has no pid", n)
	}
	_ = syscall.Kill(p, syscall.SIGKILL)
	deadline := time.Now().Add(60 * time.Second)
	for syscall.Kill(p, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("broker %d (pid %d) still alive 60s after SIGKILL", n, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// start restarts broker n on its ports and data, and waits until it serves.
func (c *cluster) start(n int) error {
	// Longer than the script's own wait (5 minutes) so that its message says why.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.script, "kafka-cluster-node", "start", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "TAPLINE_SERVICES_DIR="+c.state)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restart broker %d: %v\n%s", n, err, out)
	}
	return nil
}

func (c *cluster) peakRSS() int64 {
	var m int64
	for n := 1; n <= 3; n++ {
		if p := c.pid(n); p > 0 {
			m = max(m, vmHWM(p))
		}
	}
	return m
}

// waitInSync waits until every partition of topics has its three replicas in
// sync again, so that the next broker fault never takes a partition below
// min.insync.replicas because of the previous one.
func (c *cluster) waitInSync(timeout time.Duration, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		md, err := adm.Metadata(ctx, topics...)
		cancel()
		last = err
		if err == nil {
			last = nil
			for _, td := range md.Topics {
				if td.Err != nil {
					last = fmt.Errorf("%s: %w", td.Topic, td.Err)
				}
				for _, p := range td.Partitions {
					if len(p.ISR) < 3 || p.Leader < 0 {
						last = fmt.Errorf("%s/%d: isr %v leader %d", td.Topic, p.Partition, p.ISR, p.Leader)
					}
				}
			}
			if last == nil && len(md.Brokers) == 3 {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("replicas not back in sync after %s: %v", timeout, last)
}
