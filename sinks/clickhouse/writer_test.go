package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// memStore is a Store that keeps inserted batches and fails while told to.
type memStore struct {
	clickhouse.Store // reads are not used by the writer

	mu       sync.Mutex
	failures int // inserts still to fail
	attempts []string
	frames   map[string]int // "session/seq" → times stored
	commands int
	sessions int
}

func (m *memStore) Insert(_ context.Context, b *clickhouse.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts = append(m.attempts, b.Token)
	if m.failures > 0 {
		m.failures--
		return errors.New("connection refused")
	}
	for _, f := range b.Frames {
		m.frames[fmt.Sprintf("%s/%d", f.SessionID, f.Seq)]++
	}
	m.commands += len(b.Commands)
	m.sessions += len(b.Sessions)
	return nil
}

func TestWriterCommitsOnlyAfterTheStoreAcknowledges(t *testing.T) {
	topics := [3]string{"f", "c", "s"}
	cluster := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics[:]...))
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	k := &storetest.Kafka{Brokers: addrs, Client: prod, Admin: kadm.NewClient(prod), Topics: topics}

	store := &memStore{failures: 4, frames: map[string]int{}}
	reg := prometheus.NewRegistry()
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{
		Brokers: addrs, Group: "g", FramesTopic: topics[0], CommandsTopic: topics[1], SessionsTopic: topics[2],
		BatchRows: 100000, BatchWait: 200 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}, store, reg)
	if err != nil {
		t.Fatal(err)
	}
	var rs []storetest.Recording
	for i := range 5 {
		rs = append(rs, storetest.NewRecording("alice", "app", time.Now().Add(time.Duration(i)*time.Second), 30))
	}
	n := k.Produce(t, rs...)
	// A value that is not Avro: skipped and counted, and not a reason to stall.
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topics[0], Key: []byte("x"), Value: []byte("garbage")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	deadline := time.Now().Add(20 * time.Second)
	sawFailuresUncommitted := false
	for {
		c, total := k.Offsets(t, "g")
		store.mu.Lock()
		failing, attempts := store.failures, len(store.attempts)
		store.mu.Unlock()
		if failing > 0 && attempts > 0 {
			if c != 0 {
				t.Fatalf("offsets committed (%d) while every insert had failed", c)
			}
			sawFailuresUncommitted = true
		}
		if total == int64(n+1) && c == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d offsets", c, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !sawFailuresUncommitted {
		t.Error("never observed the failing phase")
	}

	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.attempts) < 5 || store.attempts[0] != store.attempts[4] {
		t.Errorf("retries of one batch must carry its token: attempts %v", store.attempts)
	}
	if len(store.frames) != 5*30 {
		t.Errorf("stored %d distinct frames, want %d", len(store.frames), 5*30)
	}
	for k, times := range store.frames {
		if times != 1 {
			t.Errorf("frame %s stored %d times", k, times)
		}
	}
	if want := 5 * len(rs[0].Commands); store.commands != want {
		t.Errorf("stored %d commands, want %d", store.commands, want)
	}
	if store.sessions != 10 {
		t.Errorf("stored %d session summaries, want 10", store.sessions)
	}
	if got := metricSum(t, reg, "tapline_sink_records_rejected_total"); got != 1 {
		t.Errorf("rejected records metric = %v, want 1", got)
	}
}

// metricSum adds the values of a metric's series, counters or gauges.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestBatchTokenNamesTheRecords(t *testing.T) {
	rec := func(topic string, part int32, off int64) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: part, Offset: off}
	}
	a := clickhouse.BatchToken([]*kgo.Record{rec("f", 0, 10), rec("f", 0, 11), rec("s", 2, 5)})
	b := clickhouse.BatchToken([]*kgo.Record{rec("s", 2, 5), rec("f", 0, 11), rec("f", 0, 10)})
	c := clickhouse.BatchToken([]*kgo.Record{rec("f", 0, 10), rec("f", 0, 12), rec("s", 2, 5)})
	if a != b {
		t.Errorf("same records in another order: %s vs %s", a, b)
	}
	if a == c {
		t.Errorf("different offset ranges share token %s", a)
	}
}

// gateStore holds its first insert until released, and records the order of batches.
type gateStore struct {
	memStore
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateStore) Insert(ctx context.Context, b *clickhouse.Batch) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.memStore.Insert(ctx, b)
}

func newWriterCluster(t *testing.T) (*storetest.Kafka, []string) {
	t.Helper()
	topics := [3]string{"f", "c", "s"}
	cluster := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics[:]...))
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &storetest.Kafka{Brokers: addrs, Client: prod, Admin: kadm.NewClient(prod), Topics: topics}, addrs
}

// While one batch is being inserted, the next is polled and decoded; its offsets are
// committed only after the first batch's, and every record is stored once.
func TestWriterDecodesNextBatchWhileInserting(t *testing.T) {
	k, addrs := newWriterCluster(t)
	store := &gateStore{memStore: memStore{frames: map[string]int{}}, entered: make(chan struct{}), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{
		Brokers: addrs, Group: "g", FramesTopic: k.Topics[0], CommandsTopic: k.Topics[1], SessionsTopic: k.Topics[2],
		BatchRows: 100000, BatchWait: 100 * time.Millisecond,
	}, store, reg)
	if err != nil {
		t.Fatal(err)
	}
	first := k.Produce(t, storetest.NewRecording("alice", "app", time.Now(), 30))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-store.entered
	second := k.Produce(t, storetest.NewRecording("bob", "app", time.Now(), 40))
	deadline := time.Now().Add(10 * time.Second)
	for metricSum(t, reg, "tapline_sink_pending_records") < float64(second) {
		if time.Now().After(deadline) {
			t.Fatalf("the next batch was not polled while the first was inserted (pending %v of %d)", metricSum(t, reg, "tapline_sink_pending_records"), second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c, _ := k.Offsets(t, "g"); c != 0 {
		t.Fatalf("%d offsets committed while the first batch was still being inserted", c)
	}
	close(store.release)
	k.WaitCommitted(t, "g", 10*time.Second, func(c, end int64) bool { return c == int64(first+second) && c == end })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.frames) != 70 || len(store.attempts) != 2 {
		t.Fatalf("stored %d frames in %d inserts, want 70 in 2", len(store.frames), len(store.attempts))
	}
	for k, n := range store.frames {
		if n != 1 {
			t.Fatalf("frame %s stored %d times", k, n)
		}
	}
}

// A sink that wrote its batch and has nothing more to read lets a second member
// join the group: a rebalance is not held until the next record arrives.
func TestWriterIdleAllowsRebalance(t *testing.T) {
	k, addrs := newWriterCluster(t)
	cfg := clickhouse.WriterConfig{
		Brokers: addrs, Group: "g", FramesTopic: k.Topics[0], CommandsTopic: k.Topics[1], SessionsTopic: k.Topics[2],
		BatchRows: 100000, BatchWait: 50 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs sync.WaitGroup
	start := func() {
		w, err := clickhouse.NewWriter(cfg, &memStore{frames: map[string]int{}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		runs.Add(1)
		go func() { defer runs.Done(); w.Run(ctx) }() //nolint:errcheck // ends with ctx
	}
	n := k.Produce(t, storetest.NewRecording("alice", "app", time.Now(), 30))
	start()
	k.WaitCommitted(t, "g", 10*time.Second, func(c, _ int64) bool { return c == int64(n) })
	start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		gs, err := k.Admin.DescribeGroups(context.Background(), "g")
		if err == nil {
			g := gs["g"]
			if g.State == "Stable" && len(g.Members) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second sink did not join the group of an idle one: %+v (%v)", gs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	runs.Wait()
}
