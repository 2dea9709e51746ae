package recorder

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/schemas"
)

// countProduce counts the produce requests the fake broker handles.
func countProduce(c *kfake.Cluster) *atomic.Int64 {
	var n atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// In strict mode the answers to one statement wait for the next statement and
// share its produce request: nothing reaches Kafka for them before, all of
// them are acknowledged when the statement is, and the record keeps seq order.
func TestServerFramesTravelWithTheNextClientFrame(t *testing.T) {
	c := fakeKafka(t)
	requests := countProduce(c)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	r.commit.linger = time.Hour // only a waited-for frame or End sends them
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("select 1")); err != nil {
		t.Fatal(err)
	}
	afterQuery := requests.Load()
	answers := []string{"RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"}
	for _, k := range answers {
		if err := s.Server(k, 0, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if n := requests.Load(); n != afterQuery {
		t.Fatalf("%d produce requests for answers nobody waits for", n-afterQuery)
	}
	if err := s.Client(ctx, "Query", 0, []byte("select 2")); err != nil {
		t.Fatal(err)
	}
	// Promises of a partition run in order: the answers settled before the query.
	s.st.Lock()
	inflight := s.inflight
	s.st.Unlock()
	if inflight != 0 {
		t.Fatalf("%d frames in flight after the next statement was acknowledged", inflight)
	}
	if err := s.End(ctx, "client terminated"); err != nil {
		t.Fatal(err)
	}
	frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 20*time.Second, s.ID())[s.ID()]
	checkSession(t, frames, r.PublicKey())
	var got []string
	for _, f := range frames[1 : len(frames)-1] {
		got = append(got, f.Kind)
	}
	want := append(append([]string{"Query"}, answers...), "Query")
	if !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
}

// End does not wait for the linger of frames held back: it flushes them.
func TestEndFlushesHeldFrames(t *testing.T) {
	for _, mode := range []Mode{Strict, Buffered} {
		t.Run(string(mode), func(t *testing.T) {
			c := fakeKafka(t)
			cfg := testConfig(t, mode) // ProduceTimeout 2s: a held frame would fail the end
			r := newTestRecorder(t, cfg, c.ListenAddrs())
			r.commit.linger = time.Hour
			ctx := context.Background()
			s, err := r.Start(ctx, testMeta())
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := s.Server("DataRow", 0, payloadOf(schemas.Server, i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.End(ctx, "client terminated"); err != nil {
				t.Fatalf("End with held frames: %v", err)
			}
			frames := readSessions(t, c.ListenAddrs(), schemas.TopicFramesRaw, 20*time.Second, s.ID())[s.ID()]
			if e := checkSession(t, frames, r.PublicKey()); e.Frames != 4 {
				t.Fatalf("session.end counts %d frames, want start and 3 rows", e.Frames)
			}
		})
	}
}

// In buffered mode nobody waits for any frame: the linger alone sends them.
func TestBufferedFramesSentAfterLinger(t *testing.T) {
	c := fakeKafka(t)
	cfg := testConfig(t, Buffered)
	cfg.Linger = 20 * time.Millisecond
	cfg.ProduceTimeout = 30 * time.Second
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("select 1")); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, s, 30*time.Second)
}

// While a round is unacknowledged, the statements of other strict sessions
// wait for it and then share one produce request, instead of a request each.
func TestStrictFramesWaitingForARoundShareARequest(t *testing.T) {
	const others = 4
	c := fakeKafka(t)
	r := newTestRecorder(t, testConfig(t, Strict), c.ListenAddrs())
	r.commit.patience = time.Hour // the held round keeps holding the next
	ctx := context.Background()
	var sessions []*Session
	for range others + 1 {
		s, err := r.Start(ctx, testMeta())
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}

	// The first statement's request is held by the broker until released.
	held, release := make(chan struct{}), make(chan struct{})
	var requests atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if requests.Add(1) == 1 {
			close(held)
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	done := make(chan error, others+1)
	send := func(s *Session) { done <- s.Client(ctx, "Query", 0, []byte("select 1")) }
	go send(sessions[0])
	<-held
	for _, s := range sessions[1:] {
		go send(s)
	}
	waitQueued(t, r.commit, others)
	close(release)
	for range others + 1 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("%d produce requests for %d statements, want 2 (the held one, then the rest together)", n, others+1)
	}
	for _, s := range sessions {
		if err := s.End(ctx, "client terminated"); err != nil {
			t.Fatal(err)
		}
	}
}

// waitQueued waits until the committer holds n records for the next round.
func waitQueued(t *testing.T, c *committer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		queued := len(c.queue)
		c.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records queued, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}
