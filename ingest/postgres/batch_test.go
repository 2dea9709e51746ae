package postgres

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
)

// pipeline encodes n Query messages as one byte string, as a client in
// pipeline mode writes them.
func pipeline(n int) ([]byte, []string) {
	var raw []byte
	var queries []string
	for i := range n {
		q := fmt.Sprintf("select %d", i)
		queries = append(queries, q)
		raw = append(raw, encode(&pgproto3.Query{String: q})...)
	}
	return raw, queries
}

func (b *fakeBackend) waitQueries(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q := b.gotQueries()
		if len(q) >= n || time.Now().After(deadline) {
			return q
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clientBytes concatenates the recorded CLIENT payloads after the StartupMessage.
func (s *fakeSession) clientBytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	for _, f := range s.frames[1:] {
		if f.dir == schemas.Client {
			out = append(out, f.payload...)
		}
	}
	return out
}

// A pipeline written at once is recorded in batches of at most
// maxBatchMessages, in the agent's order and byte for byte, and the target
// gets every statement in order.
func TestPipelineRecordedInBatches(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	raw, queries := pipeline(150)
	if _, err := c.conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	for range queries {
		c.untilReady()
	}
	c.send(&pgproto3.Terminate{})
	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); reason != "client terminated" {
		t.Fatalf("end reason %q", reason)
	}
	if got := h.be.gotQueries(); !slices.Equal(got, queries) {
		t.Fatalf("target got %d queries, want %d in order", len(got), len(queries))
	}
	if got, want := s.clientBytes(), append(raw, encode(&pgproto3.Terminate{})...); !bytes.Equal(got, want) {
		t.Fatalf("recorded %d client bytes differ from the %d the agent sent", len(got), len(want))
	}
	sizes := s.batchSizes()
	if slices.Max(sizes) > maxBatchMessages {
		t.Fatalf("batch sizes %v exceed %d", sizes, maxBatchMessages)
	}
	if slices.Max(sizes) < 2 {
		t.Fatalf("batch sizes %v: a pipeline written at once was recorded message by message", sizes)
	}
}

// A batch ends at Terminate: what follows is neither read nor recorded.
func TestBatchEndsAtTerminate(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	raw := slices.Concat(encode(&pgproto3.Query{String: "select 1"}), encode(&pgproto3.Terminate{}), msg('@', "junk"))
	if _, err := c.conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); reason != "client terminated" {
		t.Fatalf("end reason %q", reason)
	}
	if got, want := s.kinds(schemas.Client), []string{"StartupMessage", "Query", "Terminate"}; !slices.Equal(got, want) {
		t.Fatalf("client frames %v, want %v", got, want)
	}
	if got := h.be.waitQueries(t, 1); !slices.Equal(got, []string{"select 1"}) {
		t.Fatalf("target got %v", got)
	}
}

// Messages before a framing violation in the same read are recorded and
// forwarded, as if they had arrived separately; the violation ends the session.
func TestBatchStopsBeforeViolation(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	raw := slices.Concat(encode(&pgproto3.Query{String: "select 1"}), encode(&pgproto3.Query{String: "select 2"}), msg('@', "junk"))
	if _, err := c.conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	if e := c.fatalError(); e.Code != codeProtocolViolation || !strings.Contains(e.Message, "unexpected message type") {
		t.Fatalf("got %s %q", e.Code, e.Message)
	}
	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); !strings.Contains(reason, "protocol violation") {
		t.Fatalf("end reason %q", reason)
	}
	if got, want := s.kinds(schemas.Client), []string{"StartupMessage", "Query", "Query"}; !slices.Equal(got, want) {
		t.Fatalf("client frames %v, want %v", got, want)
	}
	if got := h.be.waitQueries(t, 2); !slices.Equal(got, []string{"select 1", "select 2"}) {
		t.Fatalf("target got %v, want both recorded queries", got)
	}
}

// When a batch cannot be recorded, none of its messages reaches the target,
// not even those before the one that failed.
func TestFailedBatchNotForwarded(t *testing.T) {
	h := newHarness(t, nil)
	h.rec.clientHook = func(kind string, payload []byte) error {
		if bytes.Contains(payload, []byte("drop")) {
			return errKafkaDown
		}
		return nil
	}
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	raw := slices.Concat(encode(&pgproto3.Query{String: "select 1"}), encode(&pgproto3.Query{String: "drop table accounts"}))
	if _, err := c.conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	if e := c.fatalError(); e.Code != codeConnectionFailure {
		t.Fatalf("got %s %q", e.Code, e.Message)
	}
	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); !strings.HasPrefix(reason, "recording failed") {
		t.Fatalf("end reason %q", reason)
	}
	if sizes := s.batchSizes(); len(sizes) != 1 {
		t.Fatalf("recorded calls %v, want only the StartupMessage: the two queries were not one batch", sizes)
	}
	time.Sleep(100 * time.Millisecond)
	if q := h.be.gotQueries(); len(q) != 0 {
		t.Fatalf("target got %v although the batch was not recorded", q)
	}
}
