package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/registry"
)

// With a schema registry configured, the Avro topics carry the registry's ids under
// the topics' subjects, and what they hold is what a processor without one writes.
func TestSchemaRegistryFraming(t *testing.T) {
	const raw = "raw"
	brokers := newFake(t, raw, 2)
	frames := interleave(fixtureSessions(6, t0), 1)
	produceFrames(t, producer(t, brokers), raw, frames)
	fake := srfake.New()
	t.Cleanup(fake.Close)

	cfgR := testConfig(t, brokers, "r", raw)
	cfgR.SchemaRegistry.URLs = []string{fake.URL()}
	cfgP := testConfig(t, brokers, "p", raw)
	for _, cfg := range []*Config{cfgR, cfgP} {
		p := start(t, cfg)
		waitCaughtUp(t, brokers, cfg.Kafka.Group, raw, time.Minute, p.alive)
		p.stop(t)
	}

	ctx := context.Background()
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(registry.Config{URLs: []string{fake.URL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := collect(t, brokers, cfgP.Topics)
	got := map[string]map[string]string{"frames": {}, "commands": {}, "sessions": {}}
	for kind, topic := range map[string]string{"frames": cfgR.Topics.Frames, "commands": cfgR.Topics.Commands, "sessions": cfgR.Topics.Sessions} {
		for _, rec := range readCommitted(t, brokers, topic) {
			var hdr sr.ConfluentHeader
			id, _, err := hdr.DecodeID(rec.Value)
			if err != nil {
				t.Fatalf("%s: not Confluent-framed: %v", topic, err)
			}
			if subjects, err := cl.SubjectsByID(ctx, id); err != nil || len(subjects) != 1 || subjects[0] != registry.Subject(topic) {
				t.Fatalf("%s: id %d is under %v (%v)", topic, id, subjects, err)
			}
			var key, val string
			switch kind {
			case "frames":
				f, err := registry.Reader(ctx, reg, schemas.FrameCodec()).Decode(rec.Value)
				must(t, err)
				key, val = fmt.Sprintf("frame %s/%d", f.SessionID, f.Seq), canon(f)
			case "commands":
				c, err := registry.Reader(ctx, reg, schemas.CommandCodec()).Decode(rec.Value)
				must(t, err)
				key, val = fmt.Sprintf("command %s/%d", c.SessionID, c.CommandSeq), canon(c)
			case "sessions":
				s, err := registry.Reader(ctx, reg, schemas.SessionCodec()).Decode(rec.Value)
				must(t, err)
				key, val = fmt.Sprintf("session %s/%d", s.SessionID, s.Version), canon(s)
			}
			got[kind][key] = val
		}
	}
	for kind, want := range map[string]map[string]string{"frames": canonMap(plain.frames), "commands": canonMap(plain.commands), "sessions": canonMap(plain.sessions)} {
		if len(want) == 0 || len(got[kind]) != len(want) {
			t.Errorf("%s: %d with the registry, %d without", kind, len(got[kind]), len(want))
		}
		for k, v := range want {
			if got[kind][k] != v {
				t.Errorf("%s differs with the registry: %s", kind, k)
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
