//go:build chdb

package chdb

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// lostAck stores every batch but reports the first inserts as failed, as when the
// connection drops after ClickHouse wrote a batch but before the client heard so.
type lostAck struct {
	clickhouse.Store
	lose atomic.Int32
}

func (l *lostAck) Insert(ctx context.Context, b *clickhouse.Batch) error {
	if err := l.Store.Insert(ctx, b); err != nil {
		return err
	}
	if l.lose.Add(-1) >= 0 {
		return errors.New("connection reset by peer")
	}
	return nil
}

// TestWriterRetryAfterLostAck: real Kafka, real chDB; the writer retries batches
// that were in fact stored, and insert_deduplication_token keeps them from being
// stored twice, without waiting for a merge.
func TestWriterRetryAfterLostAck(t *testing.T) {
	brokers := testenv.Kafka(t)
	k := storetest.NewKafka(t, brokers, 2)
	var rs []storetest.Recording
	for range 6 {
		rs = append(rs, storetest.NewRecording("alice", "app", time.Now(), 200))
	}
	total := k.Produce(t, rs...)

	conn, err := Dial(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inner, err := clickhouse.NewStore(conn, clickhouse.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := inner.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	store := &lostAck{Store: inner}
	store.lose.Store(3)
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{
		Brokers: k.Brokers, Group: "lost-ack-" + k.Topics[0], FramesTopic: k.Topics[0], CommandsTopic: k.Topics[1],
		SessionsTopic: k.Topics[2], BatchRows: 500, BatchWait: 50 * time.Millisecond, RetryMin: 10 * time.Millisecond,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	k.WaitCommitted(t, "lost-ack-"+k.Topics[0], 60*time.Second, func(c, e int64) bool { return c == int64(total) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if store.lose.Load() >= 0 {
		t.Fatal("fewer inserts than acknowledgements to lose")
	}
	// One row per key even before any merge (sessions: one per session, the two
	// summary versions of a session collapse within an insert).
	for table, want := range map[string]int64{"frames": 6 * 200, "commands": int64(6 * len(rs[0].Commands)), "sessions": 6} {
		if n := storetest.Count(t, conn, "SELECT count() FROM "+table, nil); n != want {
			t.Errorf("%s: %d rows stored (no FINAL), want %d: a retried batch was stored twice", table, n, want)
		}
	}
}
