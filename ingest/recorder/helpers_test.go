package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/schemas"
)

// fakeKafka starts an in-process Kafka with the frames topic (3 partitions).
func fakeKafka(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicFramesRaw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig is a Config with a key file in a temp dir and quick timeouts.
func testConfig(t testing.TB, mode Mode) Config {
	return Config{
		Mode:           mode,
		GatewayID:      "gw-test",
		KeyFile:        filepath.Join(t.TempDir(), "gateway.key"),
		ProduceTimeout: 2 * time.Second,
	}
}

// newTestRecorder builds a Recorder whose client talks to brokers with the
// recorder's producer options, plus a short request overhead so that a
// request the broker never answers is abandoned quickly.
func newTestRecorder(t testing.TB, cfg Config, brokers []string, extra ...kgo.Opt) *Recorder {
	t.Helper()
	opts := append(ProducerOpts(cfg), kgo.SeedBrokers(brokers...), kgo.RequestTimeoutOverhead(time.Second))
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client = cl
	r, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Close(ctx)
		cl.Close()
	})
	return r
}

func testMeta() Meta {
	return Meta{Protocol: schemas.Postgres, Start: schemas.SessionStart{
		Issuer: "https://idp.example", Subject: "ci-runner", Email: "ci@example.com", Groups: []string{"dba"},
		Target: "app", TargetAddr: "127.0.0.1:5432", ClientAddr: "127.0.0.1:40000",
		Params: map[string]string{"user": "ci", "database": "app"},
	}}
}

// readSessions consumes the topic from the start until every given session
// has a session.end (or the timeout passes), and returns each session's
// frames in partition order.
func readSessions(t testing.TB, brokers []string, topic string, timeout time.Duration, ids ...string) map[string][]schemas.Frame {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string][]schemas.Frame{}
	ended := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for len(ended) < len(want) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("sessions not complete after %s: %d of %d ended", timeout, len(ended), len(want))
		}
		for _, e := range fs.Errors() {
			t.Fatalf("fetch: %v", e.Err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			id := string(rec.Key)
			if !want[id] {
				return
			}
			f, err := schemas.FrameCodec().Decode(rec.Value)
			if err != nil {
				t.Fatalf("decode %s offset %d: %v", id, rec.Offset, err)
			}
			if f.SessionID != id {
				t.Fatalf("record keyed %s holds session %s", id, f.SessionID)
			}
			out[id] = append(out[id], f)
			if f.Kind == schemas.KindSessionEnd {
				ended[id] = true
			}
		})
	}
	return out
}

// checkSession verifies what a verifier would: seq contiguous from 0 in
// partition order, every link of the chain, and the signed session.end.
func checkSession(t testing.TB, frames []schemas.Frame, pub ed25519.PublicKey) *schemas.SessionEnd {
	t.Helper()
	if len(frames) < 2 {
		t.Fatalf("%d frames, want at least start and end", len(frames))
	}
	prev := schemas.ZeroHash
	for i := range frames {
		f := &frames[i]
		if f.Seq != int64(i) {
			t.Fatalf("frame %d has seq %d (kind %s)", i, f.Seq, f.Kind)
		}
		if err := schemas.CheckLink(f, prev); err != nil {
			t.Fatal(err)
		}
		prev = f.Hash
	}
	last := frames[len(frames)-1]
	if last.Kind != schemas.KindSessionEnd || last.End == nil {
		t.Fatalf("last frame is %s, want session.end", last.Kind)
	}
	e := last.End
	if e.LastSeq != last.Seq-1 || !bytes.Equal(e.FinalHash, frames[len(frames)-2].Hash) {
		t.Fatalf("session.end tip (%d, %x) does not name the frame before it", e.LastSeq, e.FinalHash)
	}
	if err := schemas.VerifyEnd(pub, last.SessionID, e); err != nil {
		t.Fatal(err)
	}
	return e
}

// dropProduce makes the fake broker swallow produce requests (no response)
// until the returned function is called.
func dropProduce(c *kfake.Cluster) (restore func()) {
	stop := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-stop:
			c.DropControl()
			return nil, nil, false
		default:
		}
		c.KeepControl()
		return nil, nil, true
	})
	return func() { close(stop) }
}

// failProduce answers produce requests with the given error code until restore.
func failProduce(c *kfake.Cluster, code int16) (restore func()) {
	stop := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-stop:
			c.DropControl()
			return nil, nil, false
		default:
		}
		c.KeepControl()
		return produceError(req.(*kmsg.ProduceRequest), code), nil, true
	})
	return func() { close(stop) }
}

func produceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, code
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func seqs(frames []schemas.Frame) []int64 {
	out := make([]int64, len(frames))
	for i, f := range frames {
		out[i] = f.Seq
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func payloadOf(dir schemas.Direction, i int) []byte {
	return fmt.Appendf(nil, "%s message %06d", dir, i)
}

// waitSettled waits until no frame of s is in flight.
func waitSettled(t testing.TB, s *Session, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.st.Lock()
		n := s.inflight
		s.st.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames still in flight after %s", n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failedAfterTimeout checks that a strict call refused with ErrUnavailable after
// about ProduceTimeout without an ack, and that the session is failed.
func failedAfterTimeout(t *testing.T, what string, cfg Config, s *Session, err error, took time.Duration) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s while Kafka does not ack: %v, want ErrUnavailable", what, err)
	}
	if took < cfg.ProduceTimeout || took > cfg.ProduceTimeout+time.Second {
		t.Fatalf("%s gave up after %s, want about %s", what, took, cfg.ProduceTimeout)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("session not marked failed")
	}
}
