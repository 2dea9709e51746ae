package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// BenchWorkload is the data both sink benchmarks write: sessions of Postgres-like
// frames (payload bytes each DataRow), their commands and summaries.
func BenchWorkload(sessions, frames, payload int) []Recording {
	var rs []Recording
	start := time.Now().Add(-time.Hour)
	for i := range sessions {
		rs = append(rs, NewRecordingSized(fmt.Sprintf("agent-%d", i%8), "app", start.Add(time.Duration(i)*time.Second), frames, payload))
	}
	return rs
}

// Rows counts the records a workload becomes.
func Rows(rs []Recording) int {
	n := 0
	for _, r := range rs {
		n += len(r.Frames) + len(r.Commands) + len(r.Sessions)
	}
	return n
}

// decoded returns the workload as the sink sees it after Kafka: encoded and decoded.
func decoded(b *testing.B, rs []Recording) (fs []schemas.Frame, cs []schemas.Command, ss []schemas.Session) {
	for _, r := range rs {
		for i := range r.Frames {
			v, _ := schemas.FrameCodec().Encode(&r.Frames[i])
			f, err := schemas.FrameCodec().Decode(v)
			if err != nil {
				b.Fatal(err)
			}
			fs = append(fs, f)
		}
		cs = append(cs, r.Commands...)
		ss = append(ss, r.Sessions...)
	}
	return fs, cs, ss
}

// BenchBareInsert writes the workload with Store.Insert in batches of batchRows rows
// (the sink's batch size) and reports rows/s.
func BenchBareInsert(b *testing.B, s clickhouse.Store, rs []Recording, batchRows int) {
	fs, cs, ss := decoded(b, rs)
	ctx := context.Background()
	b.ResetTimer()
	t0, cpu := time.Now(), testenv.StartCPU()
	for len(fs)+len(cs)+len(ss) > 0 {
		var batch clickhouse.Batch
		room := batchRows
		take := func(n int) int { n = min(n, room); room -= n; return n }
		n := take(len(fs))
		batch.Frames, fs = fs[:n], fs[n:]
		n = take(len(cs))
		batch.Commands, cs = cs[:n], cs[n:]
		n = take(len(ss))
		batch.Sessions, ss = ss[:n], ss[n:]
		if err := s.Insert(ctx, &batch); err != nil {
			b.Fatal(err)
		}
	}
	elapsed, used := time.Since(t0), cpu.Used()
	b.ReportMetric(float64(Rows(rs))/elapsed.Seconds(), "rows/s")
	used.Report(b, "", "row", float64(Rows(rs)))
}

// BenchSink produces the workload to fresh topics, then runs a Writer into s until
// every offset is committed and reports rows/s (consume, decode, insert, commit)
// from the group's first commit on: joining the group is not part of the rate.
func BenchSink(b *testing.B, brokers []string, s clickhouse.Store, rs []Recording, batchRows int) {
	k := NewKafka(b, brokers, 3)
	total := int64(k.Produce(b, rs...))
	group := "bench-" + k.Topics[0]
	w, err := clickhouse.NewWriter(clickhouse.WriterConfig{Brokers: k.Brokers, Group: group,
		FramesTopic: k.Topics[0], CommandsTopic: k.Topics[1], SessionsTopic: k.Topics[2], BatchRows: batchRows, BatchWait: 100 * time.Millisecond}, s, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- w.Run(ctx) }()
	var first int64
	k.WaitCommitted(b, group, 5*time.Minute, func(c, _ int64) bool { first = c; return c > 0 })
	t0, cpu := time.Now(), testenv.StartCPU()
	k.WaitCommitted(b, group, 5*time.Minute, func(c, _ int64) bool { return c == total })
	elapsed, used := time.Since(t0), cpu.Used()
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if first == total {
		b.Fatal("everything committed in the first batch: too few rows to measure a rate")
	}
	rows := float64(total - first)
	b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
	used.Report(b, "", "row", rows)
}

// BenchFramesRead writes one session of n frames, then reads it whole with
// Store.Frames b.N times and reports frames/s and the time to the first frame
// (what verify, replay and the frames NDJSON wait for).
func BenchFramesRead(b *testing.B, s clickhouse.Store, n, payload int) {
	rs := BenchWorkload(1, n, payload)
	BenchBareInsert(b, s, rs, 50000)
	id := rs[0].Frames[0].SessionID
	ctx := context.Background()
	b.ResetTimer()
	var first, total time.Duration
	read := 0
	for range b.N {
		t0 := time.Now()
		seen := 0
		err := s.Frames(ctx, id, 0, 1<<62, func(*schemas.Frame) error {
			if seen == 0 {
				first += time.Since(t0)
			}
			seen++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if seen != len(rs[0].Frames) {
			b.Fatalf("read %d frames of %d", seen, len(rs[0].Frames))
		}
		total += time.Since(t0)
		read += seen
	}
	b.ReportMetric(float64(read)/total.Seconds(), "frames/s")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-to-first")
}
