package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/schemas"
)

func TestSessionBothDirectionsConcurrently(t *testing.T) {
	c := fakeKafka(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, Strict)
	cl, err := kgo.NewClient(append(ProducerOpts(cfg), kgo.SeedBrokers(c.ListenAddrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cfg.Client = cl
	r, err := New(context.Background(), cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())

	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := uuid.Parse(s.ID()); err != nil || v.Version() != 7 {
		t.Fatalf("session id %q is not a UUIDv7", s.ID())
	}
	if got := testutil.ToFloat64(r.m.active); got != 1 {
		t.Fatalf("active sessions %v, want 1", got)
	}

	const nClient, nServer = 150, 400
	var wg sync.WaitGroup
	var clientBytes, serverBytes int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 0, 64)
		for i := range nClient {
			buf = append(buf[:0], payloadOf(schemas.Client, i)...)
			clientBytes += int64(len(buf))
			if err := s.Client(ctx, "Query", 0, buf); err != nil {
				t.Error(err)
				return
			}
			clear(buf) // callers may reuse their buffer once the call returns
		}
	}()
	go func() {
		defer wg.Done()
		for i := range nServer {
			p := payloadOf(schemas.Server, i)
			serverBytes += int64(len(p))
			if err := s.Server("DataRow", 0, p); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if err := s.End(ctx, "client terminated"); err != nil {
		t.Fatal(err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("late")); !errors.Is(err, ErrEnded) {
		t.Fatalf("Client after End: %v, want ErrEnded", err)
	}

	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	end := checkSession(t, frames, r.PublicKey())

	start := frames[0]
	if start.Kind != schemas.KindSessionStart || start.Start == nil || start.Start.Subject != "ci-runner" || start.Direction != schemas.Server {
		t.Fatalf("seq 0: %+v", start)
	}
	var payload lifecyclePayload
	if err := json.Unmarshal(start.Payload, &payload); err != nil || payload.Start.Target != "app" {
		t.Fatalf("session.start payload %q: %v", start.Payload, err)
	}
	// Each direction's messages appear in call order, intact.
	next := map[schemas.Direction]int{}
	for _, f := range frames[1 : len(frames)-1] {
		if want := payloadOf(f.Direction, next[f.Direction]); !bytes.Equal(f.Payload, want) {
			t.Fatalf("seq %d: payload %q, want %q", f.Seq, f.Payload, want)
		}
		next[f.Direction]++
		if f.GatewayID != "gw-test" || f.Protocol != schemas.Postgres || !f.Final {
			t.Fatalf("seq %d: header %+v", f.Seq, f)
		}
	}
	if next[schemas.Client] != nClient || next[schemas.Server] != nServer {
		t.Fatalf("recorded %v, want %d client and %d server frames", next, nClient, nServer)
	}
	if end.Reason != "client terminated" || end.Frames != int64(len(frames)-1) ||
		end.BytesClient != clientBytes || end.BytesServer != serverBytes {
		t.Fatalf("session.end %+v; want %d frames, %d/%d bytes", end, len(frames)-1, clientBytes, serverBytes)
	}
	var endPayload schemas.SessionEnd
	if err := json.Unmarshal(frames[len(frames)-1].Payload, &endPayload); err != nil || !bytes.Equal(endPayload.Signature, end.Signature) {
		t.Fatalf("session.end payload does not carry the signed end: %v", err)
	}

	if got := testutil.ToFloat64(r.m.frames.WithLabelValues("client", "postgres")); got != nClient {
		t.Fatalf("client frames metric %v, want %d", got, nClient)
	}
	if got := testutil.ToFloat64(r.m.frames.WithLabelValues("server", "postgres")); got != nServer+2 {
		t.Fatalf("server frames metric %v, want %d (with start and end)", got, nServer+2)
	}
	if got := testutil.ToFloat64(r.m.active); got != 0 {
		t.Fatalf("active sessions %v after End, want 0", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Fatalf("metrics not registered: %d, %v", n, err)
	}
}

func TestFragmentsReassembleExactly(t *testing.T) {
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3_000_000)
	rand.Read(big)
	if err := s.Client(ctx, "CopyData", 0, big); err != nil {
		t.Fatal(err)
	}
	if err := s.Server("CommandComplete", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())

	wantParts := (len(big) + DefaultFragmentBytes - 1) / DefaultFragmentBytes
	var joined []byte
	parts := frames[1 : 1+wantParts]
	for i, f := range parts {
		if f.Kind != "CopyData" || f.Direction != schemas.Client || f.Fragment != int32(i) || f.Final != (i == wantParts-1) {
			t.Fatalf("fragment %d: kind %s dir %s fragment %d final %v", i, f.Kind, f.Direction, f.Fragment, f.Final)
		}
		if len(f.Payload) > DefaultFragmentBytes {
			t.Fatalf("fragment %d holds %d bytes", i, len(f.Payload))
		}
		joined = append(joined, f.Payload...)
	}
	if !bytes.Equal(joined, big) {
		t.Fatal("reassembled payload differs from the original")
	}
	empty := frames[1+wantParts]
	if empty.Kind != "CommandComplete" || len(empty.Payload) != 0 || empty.Fragment != 0 || !empty.Final {
		t.Fatalf("empty message recorded as %+v", empty)
	}
}

func TestDenyRecordsItsOwnSession(t *testing.T) {
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	m := testMeta()
	m.Protocol = schemas.SSH
	if err := r.Deny(context.Background(), m, "not in a group allowed on target app"); err != nil {
		t.Fatal(err)
	}
	// The denied session's id is only in Kafka; find it by reading everything.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(schemas.TopicFramesRaw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var id string
	for id == "" {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("denied session not found")
		}
		fs.EachRecord(func(rec *kgo.Record) { id = string(rec.Key) })
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 5*time.Second, id)[id]
	end := checkSession(t, frames, r.PublicKey())
	d := frames[0]
	if len(frames) != 2 || d.Kind != schemas.KindSessionDenied || d.Denial != "not in a group allowed on target app" ||
		d.Start == nil || d.Start.Subject != "ci-runner" || d.Protocol != schemas.SSH {
		t.Fatalf("denied session frames: %+v", frames)
	}
	var p lifecyclePayload
	if err := json.Unmarshal(d.Payload, &p); err != nil || p.Denial != d.Denial || p.Start == nil {
		t.Fatalf("session.denied payload %s: %v", d.Payload, err)
	}
	if end.LastSeq != 0 || end.Frames != 1 || !strings.HasPrefix(end.Reason, "denied: ") {
		t.Fatalf("session.end %+v", end)
	}
}

func TestStrictClientReturnsOnlyAfterAck(t *testing.T) {
	c := fakeKafka(t)
	for _, mode := range []Mode{Strict, Buffered} {
		t.Run(string(mode), func(t *testing.T) {
			r := newTestRecorder(t, testConfig(t, mode), c.ListenAddrs())
			ctx := context.Background()
			s, err := r.Start(ctx, testMeta())
			if err != nil {
				t.Fatal(err)
			}
			const delay = 400 * time.Millisecond
			acked := make(chan time.Time, 1)
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.DropControl() // only this one request
				c.SleepControl(func() { time.Sleep(delay) })
				acked <- time.Now()
				return nil, nil, false // now let the broker handle it
			})
			begin := time.Now()
			if err := s.Client(ctx, "Query", 0, []byte("SELECT 1")); err != nil {
				t.Fatal(err)
			}
			returned := time.Now()
			if mode == Strict {
				if a := <-acked; returned.Before(a) {
					t.Fatalf("Client returned %s before the broker handled the frame", a.Sub(returned))
				}
			} else if returned.Sub(begin) >= delay {
				t.Fatalf("buffered Client took %s: it waited for the ack", returned.Sub(begin))
			}
			if err := s.End(ctx, "done"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStrictClientFailsWhenKafkaDoesNotAck(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Strict)
	cfg.ProduceTimeout = 500 * time.Millisecond
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("SELECT 1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Server("DataRow", 0, []byte("row")); err != nil {
		t.Fatal(err)
	}

	restore := dropProduce(c)
	begin := time.Now()
	err = s.Client(ctx, "Query", 0, []byte("DROP TABLE accounts"))
	took := time.Since(begin)
	failedAfterTimeout(t, "Client", cfg, s, err, took)
	begin = time.Now()
	if err := s.Server("DataRow", 0, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Server after failure: %v", err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Client after failure: %v", err)
	}
	if time.Since(begin) > 50*time.Millisecond {
		t.Fatal("calls on a failed session did not fail immediately")
	}
	if err := s.End(ctx, "client gone"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("End of a failed session: %v", err)
	}
	if err := r.Ready(ctx); err == nil {
		t.Fatal("Ready right after a failed frame")
	}
	if f, a := testutil.ToFloat64(r.m.failed), testutil.ToFloat64(r.m.active); f != 1 || a != 0 {
		t.Fatalf("failed sessions %v, active %v; want 1, 0", f, a)
	}

	// Kafka answers again: the frame in flight is delivered (the idempotent
	// producer retries it) and the recorder closes the session with a reason.
	restore()
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 20*time.Second, s.ID())[s.ID()]
	end := checkSession(t, frames, r.PublicKey())
	if !strings.HasPrefix(end.Reason, failureReasonPrefix) {
		t.Fatalf("session.end reason %q", end.Reason)
	}
	if got := string(frames[len(frames)-2].Payload); got != "DROP TABLE accounts" {
		t.Fatalf("frame before session.end is %q", got)
	}
	if err := r.Ready(ctx); err != nil {
		t.Fatalf("Ready after Kafka is back: %v", err)
	}
	// The counter moves right after the ack, which the consumer may beat.
	for deadline := time.Now().Add(2 * time.Second); testutil.ToFloat64(r.m.recovery.WithLabelValues("written")) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("failure session.end not counted as written")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A frame Kafka definitively rejects leaves a seq gap that the failure
// session.end does not paper over: it chains after the last sealed frame.
func TestRejectedFrameLeavesGapAndSignedEnd(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Buffered)
	cfg.ProduceTimeout = 500 * time.Millisecond
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	restore := failProduce(c, kerr.NotEnoughReplicas.Code)
	if err := s.Client(ctx, "Query", 0, []byte("SELECT secret")); err != nil {
		t.Fatal(err) // buffered: returns before Kafka answers
	}
	select {
	case <-s.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("session not failed after Kafka rejected its frame")
	}
	if !errors.Is(s.Err(), ErrUnavailable) {
		t.Fatalf("Err %v", s.Err())
	}
	// Let the producer give up on the frame (its delivery timeout) before
	// Kafka answers normally again, so that the frame is really lost.
	waitSettled(t, s, 20*time.Second)
	restore()
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 20*time.Second, s.ID())[s.ID()]
	if got := seqs(frames); len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Fatalf("recorded seqs %v, want [0 2]: seq 1 lost and visible as a gap", got)
	}
	end := frames[1].End
	if end == nil || !strings.HasPrefix(end.Reason, failureReasonPrefix) || end.LastSeq != 1 || !bytes.Equal(frames[1].PrevHash, end.FinalHash) {
		t.Fatalf("failure session.end %+v", end)
	}
	if err := schemas.VerifyEnd(r.PublicKey(), s.ID(), end); err != nil {
		t.Fatal(err)
	}
	if err := schemas.CheckLink(&frames[0], schemas.ZeroHash); err != nil {
		t.Fatal(err)
	}
}

func TestStartRefusedWhenBrokerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	for _, mode := range []Mode{Strict, Buffered} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := testConfig(t, mode)
			cfg.ProduceTimeout = 500 * time.Millisecond
			cfg.Brokers = []string{addr}
			reg := prometheus.NewRegistry()
			r, err := New(context.Background(), cfg, reg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				r.Close(ctx)
			}()
			begin := time.Now()
			s, err := r.Start(context.Background(), testMeta())
			if !errors.Is(err, ErrUnavailable) || s != nil {
				t.Fatalf("Start with no broker: %v, want ErrUnavailable", err)
			}
			if took := time.Since(begin); took > cfg.ProduceTimeout+time.Second {
				t.Fatalf("Start took %s to give up", took)
			}
			if err := r.Ready(context.Background()); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Ready with no broker: %v", err)
			}
			if got := testutil.ToFloat64(r.m.refused); got != 1 {
				t.Fatalf("refused sessions %v, want 1", got)
			}
		})
	}
}

func TestBufferedModeBoundsMemory(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Buffered)
	cfg.FragmentBytes = 8 << 10
	cfg.MaxBufferedBytes = 4 * (8<<10 + recordOverhead)
	cfg.ProduceTimeout = 5 * time.Second
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}

	// Hold every produce request until released.
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	const n = 40
	msg := make([]byte, 6<<10)
	done := make(chan int, n)
	go func() {
		for i := range n {
			if err := s.Server("DataRow", 0, msg); err != nil {
				t.Error(err)
				return
			}
			done <- i
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if used := r.budget.inUse(); used > cfg.MaxBufferedBytes {
		t.Fatalf("%d bytes buffered, bound is %d", used, cfg.MaxBufferedBytes)
	}
	if len(done) >= n/2 {
		t.Fatalf("%d of %d frames buffered while Kafka held them: no bound", len(done), n)
	}
	if len(done) == 0 {
		t.Fatal("no frame was buffered at all")
	}
	close(release)
	deadline := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case <-done:
		case <-deadline:
			t.Fatalf("only %d frames buffered after Kafka answered again", got)
		}
	}
	if err := s.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())
	if len(frames) != n+2 {
		t.Fatalf("%d frames, want %d", len(frames), n+2)
	}
}

func TestBufferFullPastTimeoutFailsSession(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Buffered)
	cfg.FragmentBytes = 8 << 10
	cfg.MaxBufferedBytes = 4 * (8<<10 + recordOverhead)
	cfg.ProduceTimeout = 400 * time.Millisecond
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	s, err := r.Start(context.Background(), testMeta())
	if err != nil {
		t.Fatal(err)
	}
	restore := dropProduce(c)
	defer restore()
	begin := time.Now()
	var lastErr error
	for range 100 {
		if lastErr = s.Server("DataRow", 0, make([]byte, 6<<10)); lastErr != nil {
			break
		}
	}
	if !errors.Is(lastErr, ErrUnavailable) {
		t.Fatalf("Server into a full buffer: %v", lastErr)
	}
	if took := time.Since(begin); took > 2*cfg.ProduceTimeout+500*time.Millisecond {
		t.Fatalf("blocked %s, want about %s", took, cfg.ProduceTimeout)
	}
	if used := r.budget.inUse(); used > cfg.MaxBufferedBytes {
		t.Fatalf("%d bytes buffered, bound is %d", used, cfg.MaxBufferedBytes)
	}
}

func TestCloseEndsLiveSessions(t *testing.T) {
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Server("ParameterStatus", 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("Failed not closed at shutdown: the proxy would keep the connection")
	}
	if !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("Err after shutdown: %v", s.Err())
	}
	if _, err := r.Start(ctx, testMeta()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 5*time.Second, s.ID())[s.ID()]
	if end := checkSession(t, frames, r.PublicKey()); end.Reason != "gateway shutdown" {
		t.Fatalf("reason %q", end.Reason)
	}
}

func TestRejectsBadInput(t *testing.T) {
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	ctx := context.Background()
	if _, err := r.Start(ctx, Meta{Protocol: "FTP"}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown protocol: %v", err)
	}
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"", schemas.KindSessionEnd, schemas.KindSessionStart} {
		if err := s.Client(ctx, kind, 0, nil); err == nil {
			t.Fatalf("kind %q accepted", kind)
		}
	}
	if s.Err() != nil {
		t.Fatal("a rejected call failed the session")
	}
	for _, cfg := range []Config{
		{Brokers: []string{"x:1"}, Mode: "fast"},
		{},
		{Brokers: []string{"x:1"}, FragmentBytes: MaxFragmentBytes + 1},
		{Brokers: []string{"x:1"}, FragmentBytes: 1 << 20, MaxBufferedBytes: 1 << 20},
	} {
		if _, err := New(ctx, cfg, nil); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}

// A long session's memory does not grow with what it records: the recorder
// keeps counters and the last hash, and unacknowledged bytes are bounded.
func TestMemoryDoesNotGrowWithSession(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicFramesRaw), kfake.BlackholeProduce())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := testConfig(t, Buffered)
	cfg.FragmentBytes = 64 << 10
	cfg.MaxBufferedBytes = 1 << 20
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	s, err := r.Start(context.Background(), testMeta())
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 16<<10)
	send := func(n int) {
		for range n {
			if err := s.Server("DataRow", 0, msg); err != nil {
				t.Fatal(err)
			}
		}
		waitSettled(t, s, 10*time.Second)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	send(200)
	before := heap()
	send(4000) // 64 MiB through the session
	after := heap()
	if after > before+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes over 64 MiB recorded", before, after)
	}
	if err := s.End(context.Background(), "done"); err != nil {
		t.Fatal(err)
	}
}
