package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/schemas"
)

// batchOf returns batch b of a pipeline: 1 to 6 messages, some of them longer
// than the test's fragment size.
func batchOf(b int) []Message {
	kinds := []string{"Parse", "Bind", "Describe", "Execute", "Sync", "Query"}
	msgs := make([]Message, 1+b%6)
	for j := range msgs {
		p := fmt.Appendf(nil, "batch %03d message %d;", b, j)
		if j == 2 {
			p = append(p, bytes.Repeat([]byte{'x'}, 150)...) // three fragments of 64 bytes
		}
		msgs[j] = Message{Kind: kinds[j], Channel: int64(b), Payload: p}
	}
	return msgs
}

// A batch is recorded as consecutive frames in order, fragments included,
// while another goroutine records Server frames; seq and chain stay intact.
func TestClientBatchInterleavedWithServer(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Strict)
	cfg.FragmentBytes = 64
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}

	const nBatches = 60
	var clientDone atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer clientDone.Store(true)
		for b := range nBatches {
			msgs := batchOf(b)
			if err := s.ClientBatch(ctx, msgs); err != nil {
				t.Error(err)
				return
			}
			for _, m := range msgs {
				clear(m.Payload) // callers may reuse their buffers once the call returns
			}
		}
	}()
	nServer := 0
	go func() {
		defer wg.Done()
		for ; !clientDone.Load(); nServer++ {
			if err := s.Server("DataRow", 0, payloadOf(schemas.Server, nServer)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if err := s.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())

	var want []Message
	for b := range nBatches {
		want = append(want, batchOf(b)...)
	}
	var got []Message
	var msg []byte
	nextServer, serverBetween := 0, 0
	lastBatch, batchEnd := int64(-1), int64(-1) // the batch being read and the seq its last frame must have
	for _, f := range frames[1 : len(frames)-1] {
		if f.Direction == schemas.Server {
			if want := payloadOf(schemas.Server, nextServer); !bytes.Equal(f.Payload, want) {
				t.Fatalf("seq %d: server payload %q, want %q", f.Seq, f.Payload, want)
			}
			nextServer++
			if lastBatch >= 0 && lastBatch < nBatches-1 {
				serverBetween++
			}
			continue
		}
		if f.Channel != lastBatch {
			if f.Seq <= batchEnd {
				t.Fatalf("seq %d starts batch %d inside batch %d", f.Seq, f.Channel, lastBatch)
			}
			lastBatch, batchEnd = f.Channel, f.Seq+int64(framesOf(batchOf(int(f.Channel)), cfg.FragmentBytes))-1
		}
		if f.Seq > batchEnd {
			t.Fatalf("seq %d of batch %d after its end at seq %d: the batch was split", f.Seq, f.Channel, batchEnd)
		}
		msg = append(msg, f.Payload...)
		if f.Final {
			got = append(got, Message{Kind: f.Kind, Channel: f.Channel, Payload: msg})
			msg = nil
		}
	}
	if nextServer != nServer {
		t.Fatalf("%d server frames recorded, want %d", nextServer, nServer)
	}
	if serverBetween == 0 {
		t.Fatal("no server frame was recorded between batches: the test did not interleave")
	}
	if len(got) != len(want) {
		t.Fatalf("%d client messages recorded, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || got[i].Channel != want[i].Channel || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("client message %d: %s/%d %q, want %s/%d %q", i,
				got[i].Kind, got[i].Channel, got[i].Payload, want[i].Kind, want[i].Channel, want[i].Payload)
		}
	}
}

func framesOf(msgs []Message, fragment int) int {
	n := 0
	for _, m := range msgs {
		n += max(1, (len(m.Payload)+fragment-1)/fragment)
	}
	return n
}

// In strict mode ClientBatch returns only after Kafka acknowledged every
// frame of the batch, also when they travel in several produce requests.
func TestStrictClientBatchWaitsForEveryAck(t *testing.T) {
	c := fakeKafka(t)
	for _, mode := range []Mode{Strict, Buffered} {
		t.Run(string(mode), func(t *testing.T) {
			r := newTestRecorder(t, testConfig(t, mode), c.ListenAddrs())
			ctx := context.Background()
			s, err := r.Start(ctx, testMeta())
			if err != nil {
				t.Fatal(err)
			}
			// Each 700 KiB message needs a record batch of its own (at most
			// 1 MB), hence a produce request of its own.
			var msgs []Message
			for i := range 3 {
				msgs = append(msgs, Message{Kind: "CopyData", Payload: bytes.Repeat([]byte{byte('a' + i)}, 700<<10)})
			}
			msgs = append(msgs, Message{Kind: "CopyDone", Payload: []byte("c\x00\x00\x00\x04")})

			const delay = 150 * time.Millisecond
			var mu sync.Mutex
			var handled []time.Time
			stop := make(chan struct{})
			defer close(stop)
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				select {
				case <-stop:
					c.DropControl()
					return nil, nil, false
				default:
				}
				c.KeepControl()
				c.SleepControl(func() { time.Sleep(delay) })
				mu.Lock()
				handled = append(handled, time.Now())
				mu.Unlock()
				return nil, nil, false // the broker handles it now, then answers
			})

			begin := time.Now()
			if err := s.ClientBatch(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			returned := time.Now()
			if mode == Buffered {
				if returned.Sub(begin) >= delay {
					t.Fatalf("buffered ClientBatch took %s: it waited for acks", returned.Sub(begin))
				}
				return
			}
			s.st.Lock()
			inflight := s.inflight
			s.st.Unlock()
			if inflight != 0 {
				t.Fatalf("ClientBatch returned with %d frames not acknowledged", inflight)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(handled) < 3 {
				t.Fatalf("the batch went out in %d produce requests; the test needs several", len(handled))
			}
			for i, h := range handled {
				if returned.Before(h) {
					t.Fatalf("ClientBatch returned %s before the broker handled request %d", h.Sub(returned), i)
				}
			}
		})
	}
}

// A batch larger than the bound on unacknowledged bytes goes through: its
// frames wait for space one by one, as single messages do.
func TestClientBatchLargerThanBufferBound(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Strict)
	cfg.FragmentBytes = 8 << 10
	cfg.MaxBufferedBytes = 4 * (8<<10 + recordOverhead)
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]Message, 12)
	for i := range msgs {
		msgs[i] = Message{Kind: "CopyData", Payload: bytes.Repeat([]byte{byte(i)}, 6<<10)}
	}
	if err := s.ClientBatch(ctx, msgs); err != nil {
		t.Fatalf("batch of %d bytes with a bound of %d: %v", 12*6<<10, cfg.MaxBufferedBytes, err)
	}
	if err := s.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())
	if len(frames) != len(msgs)+2 {
		t.Fatalf("%d frames, want %d", len(frames), len(msgs)+2)
	}
	for i, m := range msgs {
		if !bytes.Equal(frames[1+i].Payload, m.Payload) {
			t.Fatalf("frame %d does not hold message %d", 1+i, i)
		}
	}
}

// When Kafka does not acknowledge a batch, the session fails as with Client:
// the call returns ErrUnavailable after produce_timeout, later calls fail at
// once, and once Kafka is back the batch's frames end the record, followed by
// the failure session.end.
func TestClientBatchFailsLikeClient(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Strict)
	cfg.ProduceTimeout = 500 * time.Millisecond
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClientBatch(ctx, []Message{{Kind: "Parse", Payload: []byte("select 1")}, {Kind: "Sync"}}); err != nil {
		t.Fatal(err)
	}

	restore := dropProduce(c)
	batch := []Message{
		{Kind: "Query", Payload: []byte("BEGIN")},
		{Kind: "Query", Payload: []byte("DROP TABLE accounts")},
		{Kind: "Query", Payload: []byte("COMMIT")},
	}
	begin := time.Now()
	err = s.ClientBatch(ctx, batch)
	took := time.Since(begin)
	failedAfterTimeout(t, "ClientBatch", cfg, s, err, took)
	begin = time.Now()
	if err := s.ClientBatch(ctx, batch[:1]); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ClientBatch after failure: %v", err)
	}
	if err := s.ClientBatch(ctx, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("empty ClientBatch after failure: %v", err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Client after failure: %v", err)
	}
	if err := s.Server("DataRow", 0, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Server after failure: %v", err)
	}
	if time.Since(begin) > 50*time.Millisecond {
		t.Fatal("calls on a failed session did not fail immediately")
	}
	if err := s.End(ctx, "client gone"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("End of a failed session: %v", err)
	}

	restore()
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 20*time.Second, s.ID())[s.ID()]
	end := checkSession(t, frames, r.PublicKey())
	if !strings.HasPrefix(end.Reason, failureReasonPrefix) {
		t.Fatalf("session.end reason %q", end.Reason)
	}
	if len(frames) != 1+2+len(batch)+1 {
		t.Fatalf("%d frames, want start, 2 + %d client frames, end", len(frames), len(batch))
	}
	for i, m := range batch {
		if f := frames[3+i]; f.Kind != m.Kind || !bytes.Equal(f.Payload, m.Payload) {
			t.Fatalf("frame %d: %s %q, want %s %q", f.Seq, f.Kind, f.Payload, m.Kind, m.Payload)
		}
	}
}

// A bad kind anywhere in a batch rejects all of it before anything is
// recorded, without failing the session; an empty batch records nothing.
func TestClientBatchRejectsBadKind(t *testing.T) {
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", schemas.KindSessionEnd, strings.Repeat("k", maxKindBytes+1)} {
		err := s.ClientBatch(ctx, []Message{{Kind: "Query", Payload: []byte("select 1")}, {Kind: bad}})
		if err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("batch with kind %.20q: %v", bad, err)
		}
	}
	if err := s.ClientBatch(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if s.Err() != nil {
		t.Fatal("a rejected batch failed the session")
	}
	if err := s.ClientBatch(ctx, []Message{{Kind: "Query", Payload: []byte("select 2")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClientBatch(ctx, []Message{{Kind: "Query"}}); !errors.Is(err, ErrEnded) {
		t.Fatalf("ClientBatch after End: %v, want ErrEnded", err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 10*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())
	if len(frames) != 3 || string(frames[1].Payload) != "select 2" {
		t.Fatalf("frames %d, seq 1 %q: want only the accepted query", len(frames), frames[1].Payload)
	}
}
