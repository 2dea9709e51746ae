package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/registry"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// Values the processors wrote with schema registry ids reach the store when the sink
// knows the registry, and are rejected (counted) when it does not.
func TestWriterReadsRegistryFraming(t *testing.T) {
	ctx := context.Background()
	topics := [3]string{"f", "c", "s"}
	cluster := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics[:]...))
	defer cluster.Close()
	fake := srfake.New()
	defer fake.Close()
	openReg := func() *registry.Registry {
		r, err := registry.Open(registry.Config{URLs: []string{fake.URL()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	writer := openReg()
	fc, err1 := registry.Codec(ctx, writer, topics[0], schemas.FrameCodec())
	cc, err2 := registry.Codec(ctx, writer, topics[1], schemas.CommandCodec())
	sc, err3 := registry.Codec(ctx, writer, topics[2], schemas.SessionCodec())
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	rec := storetest.NewRecording("alice", "app", time.Now(), 20)
	var recs []*kgo.Record
	for i := range rec.Frames {
		v, err := fc.Encode(&rec.Frames[i])
		must(t, err)
		recs = append(recs, &kgo.Record{Topic: topics[0], Value: v})
	}
	for i := range rec.Commands {
		v, err := cc.Encode(&rec.Commands[i])
		must(t, err)
		recs = append(recs, &kgo.Record{Topic: topics[1], Value: v})
	}
	for i := range rec.Sessions {
		v, err := sc.Encode(&rec.Sessions[i])
		must(t, err)
		recs = append(recs, &kgo.Record{Topic: topics[2], Value: v})
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	must(t, err)
	defer prod.Close()
	must(t, prod.ProduceSync(ctx, recs...).FirstErr())

	for _, withRegistry := range []bool{true, false} {
		store := &memStore{frames: map[string]int{}}
		metrics := prometheus.NewRegistry()
		cfg := clickhouse.WriterConfig{Brokers: cluster.ListenAddrs(), Group: "g-" + map[bool]string{true: "reg", false: "plain"}[withRegistry],
			FramesTopic: topics[0], CommandsTopic: topics[1], SessionsTopic: topics[2], BatchWait: 50 * time.Millisecond}
		if withRegistry {
			cfg.Registry = openReg() // another process: nothing cached
		}
		w, err := clickhouse.NewWriter(cfg, store, metrics)
		must(t, err)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(runCtx) }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			store.mu.Lock()
			stored := len(store.frames) + store.commands + store.sessions
			store.mu.Unlock()
			handled := stored + int(metricSum(t, metrics, "tapline_sink_records_rejected_total"))
			if handled == len(recs) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("registry %v: %d of %d records handled", withRegistry, handled, len(recs))
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		must(t, <-done)
		rejected := metricSum(t, metrics, "tapline_sink_records_rejected_total")
		switch {
		case withRegistry && (rejected != 0 || len(store.frames) != len(rec.Frames) || store.commands != len(rec.Commands)):
			t.Errorf("with the registry: %v rejected, %d frames, %d commands stored", rejected, len(store.frames), store.commands)
		case !withRegistry && int(rejected) != len(recs):
			t.Errorf("without the registry: %v of %d rejected", rejected, len(recs))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
