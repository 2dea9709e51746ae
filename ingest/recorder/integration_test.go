package recorder

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

// createTopic makes a fresh frames topic on a real broker so that tests do not
// see each other's records.
func createTopic(t testing.TB, brokers []string, partitions int32) string {
	t.Helper()
	topic := "tapline.frames.raw.test-" + uuid.NewString()[:8]
	testenv.CreateTopic(t, brokers, topic, partitions)
	return topic
}

// 50 sessions recording concurrently in strict mode on Apache Kafka, client
// messages single and in batches: every frame of every session is stored, in
// order, and verifies.
func TestKafkaConcurrentSessionsStrict(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := createTopic(t, brokers, 6)
	cfg := testConfig(t, Strict)
	cfg.Topic = topic
	cfg.Brokers = brokers
	cfg.ProduceTimeout = 10 * time.Second
	r, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())

	const sessions, perDirection = 50, 500
	ctx := context.Background()
	ids := make([]string, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	begin := time.Now()
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runSession(ctx, r, &ids[i], perDirection)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d sessions × %d frames recorded in %s", sessions, 2*perDirection+2, time.Since(begin).Round(time.Millisecond))

	got := readSessions(t, brokers, topic, 60*time.Second, ids...)
	for _, id := range ids {
		frames := got[id]
		end := checkSession(t, frames, r.PublicKey())
		if len(frames) != 2*perDirection+2 || end.Reason != "done" {
			t.Fatalf("session %s: %d frames, end %q", id, len(frames), end.Reason)
		}
		next := map[schemas.Direction]int{}
		for _, f := range frames[1 : len(frames)-1] {
			if want := string(payloadOf(f.Direction, next[f.Direction])); string(f.Payload) != want {
				t.Fatalf("session %s seq %d: %q, want %q", id, f.Seq, f.Payload, want)
			}
			next[f.Direction]++
		}
	}
}

// runSession records n client and n server messages from two goroutines.
func runSession(ctx context.Context, r *Recorder, id *string, n int) error {
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		return err
	}
	*id = s.ID()
	var wg sync.WaitGroup
	var serverErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if serverErr = s.Server("DataRow", 0, payloadOf(schemas.Server, i)); serverErr != nil {
				return
			}
		}
	}()
	// Client messages one by one and in batches (pipelines) of up to 4.
	for i := 0; i < n; {
		msgs := make([]Message, min(1+i%5, 4, n-i))
		for j := range msgs {
			msgs[j] = Message{Kind: "Query", Payload: payloadOf(schemas.Client, i+j)}
		}
		if err := s.ClientBatch(ctx, msgs); err != nil {
			return err
		}
		i += len(msgs)
	}
	wg.Wait()
	if serverErr != nil {
		return serverErr
	}
	return s.End(ctx, "done")
}

// The broker goes away: the live session fails, new sessions are refused,
// and once the broker is back sessions start again and the failed session is
// closed with a session.end that says why.
func TestKafkaBrokerGoesAway(t *testing.T) {
	for _, how := range []string{"stop", "kill"} {
		t.Run(how, func(t *testing.T) { brokerGoesAway(t, how) })
	}
}

func brokerGoesAway(t *testing.T, how string) {
	k := testenv.PrivateKafka(t)
	topic := createTopic(t, k.Brokers(), 3)
	cfg := testConfig(t, Strict)
	cfg.Topic = topic
	cfg.Brokers = k.Brokers()
	cfg.ProduceTimeout = 2 * time.Second
	r, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Close(ctx)
	}()
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Client(ctx, "Query", 0, payloadOf(schemas.Client, i)); err != nil {
			t.Fatal(err)
		}
		if err := s.Server("DataRow", 0, payloadOf(schemas.Server, i)); err != nil {
			t.Fatal(err)
		}
	}

	if how == "kill" {
		k.Kill() // as a crash: no clean close of connections
	} else {
		k.Stop()
	}
	begin := time.Now()
	err = s.Client(ctx, "Query", 0, []byte("DELETE FROM accounts"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Client with the broker gone: %v", err)
	}
	if took := time.Since(begin); took > cfg.ProduceTimeout+time.Second {
		t.Fatalf("Client took %s to fail", took)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("session not failed")
	}
	begin = time.Now()
	if _, err := r.Start(ctx, testMeta()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start with the broker gone: %v", err)
	}
	if took := time.Since(begin); took > cfg.ProduceTimeout+time.Second {
		t.Fatalf("Start took %s to be refused", took)
	}
	if err := r.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready with the broker gone: %v", err)
	}

	k.Start()
	deadline := time.Now().Add(90 * time.Second)
	for r.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 90s after the broker came back: %v", r.Ready(ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var s2 *Session
	for s2 == nil {
		if s2, err = r.Start(ctx, testMeta()); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("Start after the broker came back: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := s2.Client(ctx, "Query", 0, []byte("SELECT 1")); err != nil {
		t.Fatal(err)
	}
	if err := s2.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}

	got := readSessions(t, k.Brokers(), topic, 60*time.Second, s.ID(), s2.ID())
	checkSession(t, got[s2.ID()], r.PublicKey())
	frames := got[s.ID()]
	last := frames[len(frames)-1]
	if !strings.HasPrefix(last.End.Reason, failureReasonPrefix) {
		t.Fatalf("failed session ends with %q", last.End.Reason)
	}
	if err := schemas.VerifyEnd(r.PublicKey(), s.ID(), last.End); err != nil {
		t.Fatal(err)
	}
	// Frames before the failure are all there, in order; the unacknowledged
	// frame is either stored (the producer's retry reached the restarted
	// broker) or missing as a gap — never re-sequenced.
	for i, f := range frames[:41] {
		if f.Seq != int64(i) {
			t.Fatalf("frame %d has seq %d", i, f.Seq)
		}
	}
	if last.Seq != 42 || last.End.LastSeq != 41 {
		t.Fatalf("failure session.end at seq %d naming %d; want 42 naming 41", last.Seq, last.End.LastSeq)
	}
	if len(frames) == 43 {
		checkSession(t, frames, r.PublicKey())
	}
	t.Logf("failed session: %d frames stored, end reason %q", len(frames), last.End.Reason)
}

// realKafkaForBench adds the shared Apache Kafka broker to the benchmarks
// when it is set up (not under -short).
func realKafkaForBench(b *testing.B) ([]string, string) {
	if testing.Short() {
		return nil, ""
	}
	brokers := testenv.Kafka(b)
	return brokers, createTopic(b, brokers, 6)
}
