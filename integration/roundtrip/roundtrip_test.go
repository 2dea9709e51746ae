package roundtrip

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

const (
	sessions = 50
	frames   = 10_000
)

func TestRoundTripKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(6), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c.ListenAddrs())
}

func TestRoundTripApacheKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	logBrokerVersion(t, brokers)
	roundTrip(t, brokers)
}

// logBrokerVersion states which broker the test ran against: Apache Kafka reports
// its software name and version in ApiVersions (KIP-511 client info is the reverse
// direction, so read the highest API versions and the cluster's feature levels).
func logBrokerVersion(t *testing.T, brokers []string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("api versions from broker %d: %v", v.NodeID, v.Err)
		}
		t.Logf("broker %d reports itself as %s", v.NodeID, v.VersionGuess())
	}
	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName, req.ClientSoftwareVersion = "tapline-test", "1"
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range resp.FinalizedFeatures {
		t.Logf("finalized feature %s=%d", f.Name, f.MaxVersionLevel)
	}
}

func roundTrip(t *testing.T, brokers []string) {
	t.Helper()
	topic := "roundtrip-" + uuid.NewString()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 6, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	want := makeSessions(t)
	produce(ctx, t, brokers, topic, want)
	got := consume(ctx, t, brokers, topic, frames)

	if len(got) != len(want) {
		t.Fatalf("got %d sessions, want %d", len(got), len(want))
	}
	for id, ws := range want {
		gs := got[id]
		if len(gs) != len(ws) {
			t.Fatalf("session %s: got %d frames, want %d", id, len(gs), len(ws))
		}
		prev := schemas.ZeroHash
		for i := range ws {
			g, w := gs[i], ws[i]
			if g.Seq != int64(i) {
				t.Fatalf("session %s: frame %d has seq %d: out of order", id, i, g.Seq)
			}
			if !bytes.Equal(g.Payload, w.Payload) || g.Kind != w.Kind || g.Direction != w.Direction || !g.TS.Equal(w.TS) {
				t.Fatalf("session %s seq %d differs after the round trip", id, i)
			}
			if err := schemas.CheckLink(&g, prev); err != nil {
				t.Fatalf("session %s: %v", id, err)
			}
			prev = g.Hash
		}
	}
}

// makeSessions builds 10,000 sealed frames spread over 50 sessions, with payloads of
// random bytes and sizes from empty to 64 KiB.
func makeSessions(t *testing.T) map[string][]schemas.Frame {
	rng := rand.New(rand.NewPCG(7, 7))
	ids := make([]string, sessions)
	out := map[string][]schemas.Frame{}
	for i := range ids {
		u, _ := uuid.NewV7()
		ids[i] = u.String()
	}
	for range frames {
		id := ids[rng.IntN(sessions)]
		prev := schemas.ZeroHash
		if n := len(out[id]); n > 0 {
			prev = out[id][n-1].Hash
		}
		size := rng.IntN(1024)
		if rng.IntN(100) == 0 {
			size = 64 << 10
		}
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		dir := schemas.Client
		if rng.IntN(2) == 0 {
			dir = schemas.Server
		}
		f := schemas.Frame{SessionID: id, Seq: int64(len(out[id])), TS: time.Now().UTC().Truncate(time.Microsecond),
			Direction: dir, Protocol: schemas.Postgres, Kind: fmt.Sprintf("Kind%d", rng.IntN(5)),
			Payload: payload, Final: true, GatewayID: "roundtrip"}
		if err := schemas.Seal(&f, prev); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], f)
	}
	return out
}

func produce(ctx context.Context, t *testing.T, brokers []string, topic string, in map[string][]schemas.Frame) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Interleave sessions the way a gateway would: round robin over live sessions.
	next := map[string]int{}
	for left := frames; left > 0; {
		for id, fs := range in {
			i := next[id]
			if i >= len(fs) {
				continue
			}
			next[id]++
			left--
			v, err := schemas.FrameCodec().Encode(&fs[i])
			if err != nil {
				t.Fatal(err)
			}
			cl.Produce(ctx, &kgo.Record{Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func consume(ctx context.Context, t *testing.T, brokers []string, topic string, n int) map[string][]schemas.Frame {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string][]schemas.Frame{}
	for seen := 0; seen < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d frames: %v", seen, n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			f, err := schemas.FrameCodec().Decode(r.Value)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if string(r.Key) != f.SessionID {
				t.Fatalf("key %q carries a frame of session %s", r.Key, f.SessionID)
			}
			out[f.SessionID] = append(out[f.SessionID], f)
			seen++
		})
	}
	return out
}
