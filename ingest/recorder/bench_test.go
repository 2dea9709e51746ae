package recorder

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// benchPayload is a typical small client message (a short SQL query).
const benchPayload = 128

// BenchmarkStrictClient measures strict-mode Session.Client (seal, encode,
// produce, wait for acks=all) with 1 and 32 sessions calling concurrently,
// against the in-process fake broker and, when it is set up, Apache Kafka.
// Next to each ("raw") is the baseline: franz-go ProduceSync of records of the
// same size with the same producer options, run right after it so that both
// see the same machine load. ns/op is wall time per call across all sessions
// (1/throughput); p50/p99 are per-call latencies.
func BenchmarkStrictClient(b *testing.B) {
	value := make([]byte, encodedFrameSize(b))
	for _, tgt := range benchTargets(b) {
		for _, sessions := range []int{1, 32} {
			name := fmt.Sprintf("%s/sessions=%d", tgt.name, sessions)
			b.Run(name+"/recorder", func(b *testing.B) { benchRecorder(b, tgt, sessions) })
			b.Run(name+"/raw", func(b *testing.B) { benchRaw(b, tgt, sessions, value) })
		}
	}
}

// BenchmarkStrictPipeline measures one extended-protocol round (Parse, Bind,
// Describe, Execute, Sync, sent together by the agent) in strict mode,
// recorded as one ClientBatch and as five Client calls. ns/op is per round.
func BenchmarkStrictPipeline(b *testing.B) {
	round := []Message{{Kind: "Parse"}, {Kind: "Bind"}, {Kind: "Describe"}, {Kind: "Execute"}, {Kind: "Sync"}}
	for i := range round {
		round[i].Payload = make([]byte, benchPayload/2)
	}
	for _, tgt := range benchTargets(b) {
		for _, sessions := range []int{1, 32} {
			name := fmt.Sprintf("%s/sessions=%d", tgt.name, sessions)
			b.Run(name+"/batch", func(b *testing.B) {
				benchSessions(b, tgt, sessions, func(s *Session) error { return s.ClientBatch(context.Background(), round) })
			})
			b.Run(name+"/one-by-one", func(b *testing.B) {
				benchSessions(b, tgt, sessions, func(s *Session) error {
					for _, m := range round {
						if err := s.Client(context.Background(), m.Kind, 0, m.Payload); err != nil {
							return err
						}
					}
					return nil
				})
			})
		}
	}
}

func benchRecorder(b *testing.B, tgt benchTarget, sessions int) {
	payload := make([]byte, benchPayload)
	benchSessions(b, tgt, sessions, func(s *Session) error {
		return s.Client(context.Background(), "Query", 0, payload)
	})
}

// benchSessions runs b.N calls of op spread over the given number of strict
// sessions.
func benchSessions(b *testing.B, tgt benchTarget, sessions int, op func(*Session) error) {
	cfg := testConfig(b, Strict)
	cfg.Topic = tgt.topic
	cfg.ProduceTimeout = 10 * time.Second
	r := newTestRecorder(b, cfg, tgt.brokers)
	ss := make([]*Session, sessions)
	for i := range ss {
		s, err := r.Start(context.Background(), testMeta())
		if err != nil {
			b.Fatal(err)
		}
		ss[i] = s
	}
	runConcurrent(b, sessions, func(i int) error { return op(ss[i]) })
	for _, s := range ss {
		if err := s.End(context.Background(), "done"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRaw(b *testing.B, tgt benchTarget, sessions int, value []byte) {
	cfg := testConfig(b, Strict)
	cfg.Topic = tgt.topic
	cl, err := kgo.NewClient(append(ProducerOpts(cfg), kgo.SeedBrokers(tgt.brokers...))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	keys := make([][]byte, sessions)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "01900000-0000-7000-8000-%012d", i)
	}
	runConcurrent(b, sessions, func(i int) error {
		return cl.ProduceSync(context.Background(), &kgo.Record{Key: keys[i], Value: value}).FirstErr()
	})
}

// encodedFrameSize is the Kafka value size of a benchPayload Query frame.
func encodedFrameSize(b *testing.B) int {
	f := schemas.Frame{
		SessionID: "01900000-0000-7000-8000-000000000000", TS: time.Now(), Direction: schemas.Client,
		Protocol: schemas.Postgres, Kind: "Query", Payload: make([]byte, benchPayload), Final: true, GatewayID: "gw-test",
	}
	if err := schemas.Seal(&f, schemas.ZeroHash); err != nil {
		b.Fatal(err)
	}
	v, err := schemas.FrameCodec().Encode(&f)
	if err != nil {
		b.Fatal(err)
	}
	return len(v)
}

type benchTarget struct {
	name    string
	brokers []string
	topic   string
}

func benchTargets(b *testing.B) []benchTarget {
	c := fakeKafka(b)
	out := []benchTarget{{"kfake", c.ListenAddrs(), schemas.TopicFramesRaw}}
	if brokers, topic := realKafkaForBench(b); brokers != nil {
		out = append(out, benchTarget{"kafka", brokers, topic})
	}
	return out
}

// runConcurrent runs b.N calls of fn spread over n goroutines (goroutine i
// passes i) and reports per-call latency percentiles.
func runConcurrent(b *testing.B, n int, fn func(i int) error) {
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	b.ResetTimer()
	for g := range n {
		calls := b.N / n
		if g < b.N%n {
			calls++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[g] = make([]time.Duration, 0, calls)
			for range calls {
				t := time.Now()
				if err := fn(g); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[g] = append(lat[g], time.Since(t))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}
