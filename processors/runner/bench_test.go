package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/integration/testenv"
)

// BenchmarkThroughput measures frames per second through the processor (mask,
// stitch, summaries, audit, state, all in Kafka transactions) against a plain
// consume→produce copy with the same transactional setup (GroupTransactSession,
// read_committed, the same batch size), on the same broker in the same run. Each
// iteration processes the same raw topic from the start with fresh groups and outputs.
func BenchmarkThroughput(b *testing.B) {
	brokers := testenv.Kafka(b)
	const sessions = 4000
	run := fmt.Sprintf("bench-%d-%d", time.Now().Unix(), rand.IntN(1_000_000))
	raw := run + ".raw"
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer adm.Close()
	if _, err := adm.CreateTopic(context.Background(), 4, 1, nil, raw); err != nil {
		b.Fatal(err)
	}
	frames := interleave(fixtureSessions(sessions, time.Now().Add(-time.Hour)), 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	produceFrames(b, cl, raw, frames)
	cl.Close()
	b.Logf("%d frames in %d sessions", len(frames), sessions)

	var copyFPS, procFPS float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("%s-%d", run, i)
		copyFPS += benchCopy(b, brokers, name+"-copy", raw)
		procFPS += benchProcess(b, brokers, name+"-proc", raw)
	}
	b.StopTimer()
	copyFPS /= float64(b.N)
	procFPS /= float64(b.N)
	b.ReportMetric(copyFPS, "copy-frames/s")
	b.ReportMetric(procFPS, "process-frames/s")
	b.ReportMetric(procFPS/copyFPS, "process/copy")
	b.ReportMetric(0, "ns/op") // one op is two full runs; the rates above are the result
}

const benchPoll = 2000

// benchCopy copies the raw topic to another topic, a transaction per poll, and
// returns its rate in frames per second.
func benchCopy(b *testing.B, brokers []string, name, raw string) float64 {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(name+"-group"),
		kgo.ConsumeTopics(raw), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(name+"-txn"), kgo.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	out := name + ".copy"
	if _, err := kadm.NewClient(sess.Client()).CreateTopic(ctx, 4, 1, nil, out); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			fs := sess.PollRecords(ctx, benchPoll)
			if fs.NumRecords() == 0 {
				continue
			}
			if err := sess.Begin(); err != nil {
				done <- err
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				sess.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}, nil)
			})
			if _, err := sess.End(ctx, kgo.TryCommit); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	rate := rateUntilCaughtUp(b, brokers, name+"-group", raw)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return rate
}

// benchProcess runs the processor over the raw topic and returns its rate in frames
// per second.
func benchProcess(b *testing.B, brokers []string, name, raw string) float64 {
	b.Helper()
	cfg := testConfig(b, brokers, name, raw)
	cfg.Kafka.MaxPollRecords = benchPoll
	// Topics exist before the clock starts, as for the copy.
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	t := cfg.Topics
	for _, topic := range []string{t.Frames, t.Commands, t.Sessions, t.Audit, t.State} {
		if _, err := adm.CreateTopic(context.Background(), 4, 1, nil, topic); err != nil {
			b.Fatal(err)
		}
	}
	adm.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil) }()
	rate := rateUntilCaughtUp(b, brokers, cfg.Kafka.Group, raw)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return rate
}

// rateUntilCaughtUp polls the group's committed offsets every 10 ms until they reach
// the end of the raw topic, and returns the frames committed per second from the
// group's first commit on (joining the group is not part of the rate).
func rateUntilCaughtUp(b *testing.B, brokers []string, group, raw string) float64 {
	b.Helper()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, raw)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	var first time.Time
	var firstCommitted int64
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			var n int64
			committed.Each(func(o kadm.OffsetResponse) {
				if o.Topic == raw && o.Err == nil {
					n += o.At
				}
			})
			if n > 0 && first.IsZero() {
				first, firstCommitted = time.Now(), n
			}
			if n >= total {
				if n == firstCommitted {
					b.Fatal("everything committed in the first poll: too few frames to measure a rate")
				}
				return float64(n-firstCommitted) / time.Since(first).Seconds()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("group %s did not catch up", group)
	return 0
}
