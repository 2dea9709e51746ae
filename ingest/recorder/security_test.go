package recorder

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/kafkaconn"
	"github.com/tapline/tapline/kafkaconn/kafkaconntest"
	"github.com/tapline/tapline/schemas"
)

func noEnv(string) (string, bool) { return "", false }

func TestSessionOverTLSAndSCRAM(t *testing.T) {
	k := kafkaconntest.Start(t, kfake.SeedTopics(3, schemas.TopicFramesRaw))
	opts, err := k.Security.Opts(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, Strict)
	cfg.Brokers, cfg.Opts = k.Brokers, opts
	r, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())

	ctx := context.Background()
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatalf("Start over TLS + SCRAM: %v", err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("SELECT 1\x00")); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, "client closed"); err != nil {
		t.Fatal(err)
	}

	// Read back through a client with the same settings: plaintext cannot reach it.
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(schemas.TopicFramesRaw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var kinds []string
	for len(kinds) < 3 && rctx.Err() == nil {
		fs := cl.PollFetches(rctx)
		fs.EachRecord(func(rec *kgo.Record) {
			f, err := schemas.FrameCodec().Decode(rec.Value)
			if err != nil || f.SessionID != s.ID() {
				t.Fatalf("record %s: %v", rec.Key, err)
			}
			kinds = append(kinds, f.Kind)
		})
	}
	if want := []string{"session.start", "Query", "session.end"}; len(kinds) != 3 || kinds[0] != want[0] || kinds[1] != want[1] || kinds[2] != want[2] {
		t.Fatalf("frames in the topic: %v, want %v", kinds, want)
	}
}

func TestWrongSASLPasswordRefusesSessions(t *testing.T) {
	k := kafkaconntest.Start(t, kfake.SeedTopics(3, schemas.TopicFramesRaw))
	sec := k.Security
	sec.SASL = &kafkaconn.SASL{Mechanism: "SCRAM-SHA-256", Username: kafkaconntest.User, Password: "not-it"}
	opts, err := sec.Opts(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, Strict)
	cfg.ProduceTimeout = 500 * time.Millisecond
	cfg.Brokers, cfg.Opts = k.Brokers, opts
	r, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r.Close(ctx)
	}()
	if s, err := r.Start(context.Background(), testMeta()); !errors.Is(err, ErrUnavailable) || s != nil {
		t.Fatalf("Start with a wrong password: %v, want ErrUnavailable", err)
	}
	if err := r.Ready(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready with a wrong password: %v, want ErrUnavailable", err)
	}
}
