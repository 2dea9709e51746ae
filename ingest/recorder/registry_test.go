package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/registry"
)

// With a registry codec every frame of a session carries the raw topic's registry
// id, and a reader that resolves ids through the registry gets the session back.
func TestRegistryFramedSession(t *testing.T) {
	ctx := context.Background()
	c := fakeKafka(t)
	fake := srfake.New()
	t.Cleanup(fake.Close)
	open := func() *registry.Registry {
		r, err := registry.Open(registry.Config{URLs: []string{fake.URL()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cfg := testConfig(t, Strict)
	codec, err := registry.Codec(ctx, open(), schemas.TopicFramesRaw, schemas.FrameCodec())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Codec = codec
	r := newTestRecorder(t, cfg, c.ListenAddrs())
	s, err := r.Start(ctx, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client(ctx, "Query", 0, []byte("Q\x00\x00\x00\x0dSELECT 1\x00")); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, "client terminated"); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(schemas.TopicFramesRaw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reader := registry.Reader(ctx, open(), schemas.FrameCodec())
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var frames []schemas.Frame
	for len(frames) == 0 || frames[len(frames)-1].Kind != schemas.KindSessionEnd {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("session not complete: %d frames", len(frames))
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var hdr sr.ConfluentHeader
			if _, _, err := hdr.DecodeID(rec.Value); err != nil {
				t.Fatalf("offset %d is not Confluent-framed: %v", rec.Offset, err)
			}
			f, err := reader.Decode(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, f)
		})
	}
	checkSession(t, frames, r.PublicKey())
	if len(frames) != 3 || frames[1].Kind != "Query" {
		t.Errorf("frames %+v", frames)
	}
}
