package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// BenchmarkThroughput measures frames per second through the processor (mask,
// stitch, summaries, audit, state, all in Kafka transactions) against a plain
// consume→produce copy with the same transactional setup (GroupTransactSession,
// read_committed, the same batch size), on the same broker in the same run. Each
// iteration processes the same raw topic from the start with fresh groups and outputs.
// Next to the rates: CPU µs per frame of this process (the processor or the copy,
// with their Kafka clients) and of the broker, which are steadier on a shared machine.
//
// Two workloads of about 430,000 frames: "mixed" is 16,000 short Postgres and SSH
// sessions rich in secrets (the privacy fixtures), interleaved, so that nearly every
// frame of a transaction belongs to a different session; "pgbench" is 64 long
// sessions of pgbench -S statements, the traffic of the gateway's Postgres benchmark.
func BenchmarkThroughput(b *testing.B) {
	brokers := testenv.Kafka(b)
	t0 := time.Now().Add(-time.Hour)
	b.Run("mixed", func(b *testing.B) {
		benchThroughput(b, brokers, func() []*sessiontest.Session { return fixtureSessions(16000, t0) })
	})
	b.Run("pgbench", func(b *testing.B) {
		benchThroughput(b, brokers, func() []*sessiontest.Session { return pgbenchSessions(64, 1340, t0) })
	})
}

// benchThroughput writes the sessions to a fresh raw topic and measures. The
// fixtures are dropped before the clock starts: the test process is also the
// processor, and a heap still holding 430,000 frames made every collection during
// the runs longer (the copy's CPU per frame tripled in one run).
func benchThroughput(b *testing.B, brokers []string, workload func() []*sessiontest.Session) {
	run := fmt.Sprintf("bench-%d-%d", time.Now().Unix(), rand.IntN(1_000_000))
	raw := run + ".raw"
	b.Cleanup(func() { deleteTopicsWithPrefix(b, brokers, run) })
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer adm.Close()
	createTopics(b, adm, raw)
	sessions := workload()
	frames := interleave(sessions, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	produceFrames(b, cl, raw, frames)
	cl.Close()
	b.Logf("%d frames in %d sessions", len(frames), len(sessions))
	sessions, frames = nil, nil
	runtime.GC()

	var cp, proc phase
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("%s-%d", run, i)
		cp.add(benchCopy(b, brokers, name+"-copy", raw))
		proc.add(benchProcess(b, brokers, name+"-proc", raw))
	}
	b.StopTimer()
	b.ReportMetric(cp.rate(), "copy-frames/s")
	b.ReportMetric(proc.rate(), "process-frames/s")
	b.ReportMetric(proc.rate()/cp.rate(), "process/copy")
	cp.cpu.Report(b, "copy-", "frame", cp.frames)
	proc.cpu.Report(b, "process-", "frame", proc.frames)
	b.ReportMetric(0, "ns/op") // one op is two full runs; the rates above are the result
}

// pgbenchSessions are n sessions of k pgbench -S transactions each (simple
// protocol): a Query, then RowDescription, DataRow, CommandComplete and
// ReadyForQuery, as the gateway records them.
func pgbenchSessions(n, k int, t0 time.Time) []*sessiontest.Session {
	rd := encPG(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}})
	cc := encPG(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	rfq := encPG(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	var out []*sessiontest.Session
	for i := range n {
		start := schemas.SessionStart{Issuer: "https://idp.test", Subject: fmt.Sprintf("ci-%02d", i), Groups: []string{"ops"},
			Target: "app", ClientAddr: "10.1.0.2:40000"}
		s := sessiontest.Start(schemas.Postgres, start, sessiontest.NewKey(3), t0.Add(time.Duration(i)*time.Millisecond))
		for j := range k {
			aid := (i*k+j)*7919%100000 + 1
			s.Add(schemas.Client, "Query", 0, encPG(&pgproto3.Query{String: fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", aid)}))
			s.Add(schemas.Server, "RowDescription", 0, rd)
			s.Add(schemas.Server, "DataRow", 0, encPG(&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}))
			s.Add(schemas.Server, "CommandComplete", 0, cc)
			s.Add(schemas.Server, "ReadyForQuery", 0, rfq)
		}
		s.Add(schemas.Client, "Terminate", 0, encPG(&pgproto3.Terminate{}))
		s.End("client terminated")
		out = append(out, s)
	}
	return out
}

// phase is what runs measured: frames, wall time and CPU, summed over runs.
type phase struct {
	frames  float64
	elapsed time.Duration
	cpu     testenv.CPUUse
}

func (p *phase) add(q phase) {
	p.frames += q.frames
	p.elapsed += q.elapsed
	p.cpu = p.cpu.Add(q.cpu)
}

func (p *phase) rate() float64 { return p.frames / p.elapsed.Seconds() }

// createTopics creates 4-partition topics and waits until the broker's metadata
// lists a leader for every partition. A client that asks too early is told the topic
// has no leader and asks again only after its metadata minimum age (5 s): one such
// wait inside a measured run once made it look ten times slower.
func createTopics(b *testing.B, adm *kadm.Client, topics ...string) {
	b.Helper()
	ctx := context.Background()
	for _, t := range topics {
		if _, err := adm.CreateTopic(ctx, 4, 1, nil, t); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil && topicsLed(md, topics) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("topics %v have no leaders after 30 s (metadata error: %v)", topics, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func topicsLed(md kadm.Metadata, topics []string) bool {
	for _, t := range topics {
		td, ok := md.Topics[t]
		if !ok || td.Err != nil || len(td.Partitions) != 4 {
			return false
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

const benchPoll = 2000

// benchCopy copies the raw topic to another topic, a transaction per poll.
func benchCopy(b *testing.B, brokers []string, name, raw string) phase {
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
	createTopics(b, kadm.NewClient(sess.Client()), out)
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

// benchProcess runs the processor over the raw topic.
func benchProcess(b *testing.B, brokers []string, name, raw string) phase {
	b.Helper()
	cfg := testConfig(b, brokers, name, raw)
	cfg.Kafka.MaxPollRecords = benchPoll
	// Topics exist before the clock starts, as for the copy.
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	t := cfg.Topics
	createTopics(b, adm, t.Frames, t.Commands, t.Sessions, t.Audit, t.State)
	adm.Close()
	// A running processor has its protocols warmed up (the SQL parser's
	// WebAssembly module is compiled once, 1–1.3 s of CPU here); Run starts
	// that in the background, where it fell in the measured span: 3 µs of CPU
	// per frame on pgbench traffic. BENCH_COLD=1 measures it that way again.
	if os.Getenv("BENCH_COLD") == "" {
		warmUp()
	}
	// BENCH_PPROF=FILE: a CPU profile of the processing alone (no setup, no copy).
	if path := os.Getenv("BENCH_PPROF"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
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
// group's first commit on (joining the group is not part of the rate), with the CPU
// this process and the broker spent over the same span.
func rateUntilCaughtUp(b *testing.B, brokers []string, group, raw string) phase {
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
	var (
		first          time.Time
		firstCommitted int64
		cpu            *testenv.CPUMeter
	)
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
				first, firstCommitted, cpu = time.Now(), n, testenv.StartCPU()
			}
			if n >= total {
				if n == firstCommitted {
					b.Fatal("everything committed in the first poll: too few frames to measure a rate")
				}
				return phase{frames: float64(n - firstCommitted), elapsed: time.Since(first), cpu: cpu.Used()}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("group %s did not catch up", group)
	return phase{}
}
