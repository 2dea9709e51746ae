package runner

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// t0 starts the fixture sessions now: sessions with old frames would be abandoned by
// the runner's periodic sweep (idle since their last frame's time) whenever a run
// takes longer than a tick, which made a run's output depend on the machine's load.
var t0 = time.Now().UTC().Truncate(time.Millisecond)

func testConfig(t testing.TB, brokers []string, name, raw string) *Config {
	t.Helper()
	// The test sessions are signed with sessiontest.NewKey(1) or (3): trust both.
	y := fmt.Sprintf(`
kafka: {group: %[1]s-group, transactional_id: %[1]s-txn, max_poll_records: 50, transaction_timeout: 20s}
topics: {raw: %[2]s, frames: %[1]s.frames, commands: %[1]s.commands, sessions: %[1]s.sessions, audit: %[1]s.audit, state: %[1]s.state, dead_letter: %[1]s.deadletter}
trusted_gateway_keys: [%[3]x, %[4]x]
signing_key: %[5]s
`, name, raw, []byte(sessiontest.NewKey(1).Public().(ed25519.PublicKey)), []byte(sessiontest.NewKey(3).Public().(ed25519.PublicKey)),
		processorKeyFile(t))
	c, err := Parse([]byte(y), func(k string) (string, bool) {
		if k == "TAPLINE_KAFKA_BROKERS" {
			return strings.Join(brokers, ","), true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// processorKeyFile writes the same processor key (a raw seed) for every config of a
// test, so that runs compared with each other sign alike.
func processorKeyFile(t testing.TB) string {
	path := filepath.Join(t.TempDir(), "processor.key")
	if err := os.WriteFile(path, sessiontest.NewKey(7).Seed(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.Default()
	}
	go func() { r.done <- Run(ctx, cfg, log, nil) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) alive() error {
	select {
	case err := <-r.done:
		r.done <- err
		return fmt.Errorf("exited: %v", err)
	default:
		return nil
	}
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("processor: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("processor did not stop")
	}
}

func newFake(t *testing.T, raw string, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, raw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func producer(t *testing.T, brokers []string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// A processor stopped half way and restarted produces exactly what one that ran
// through produces: the state topic carries the sessions across the restart.
func TestRestartContinuesExactly(t *testing.T) {
	const raw = "raw"
	brokers := newFake(t, raw, 3)
	sessions := fixtureSessions(16, t0)
	frames := interleave(sessions, 1)
	cl := producer(t, brokers)
	half := len(frames) / 2

	produceFrames(t, cl, raw, frames[:half])
	cfgB := testConfig(t, brokers, "b", raw)
	b := start(t, cfgB)
	waitCaughtUp(t, brokers, cfgB.Kafka.Group, raw, time.Minute, b.alive)
	b.stop(t)

	produceFrames(t, cl, raw, frames[half:])
	b = start(t, cfgB)
	waitCaughtUp(t, brokers, cfgB.Kafka.Group, raw, time.Minute, b.alive)
	b.stop(t)

	cfgA := testConfig(t, brokers, "a", raw)
	a := start(t, cfgA)
	waitCaughtUp(t, brokers, cfgA.Kafka.Group, raw, time.Minute, a.alive)
	a.stop(t)

	outA, outB := collect(t, brokers, cfgA.Topics), collect(t, brokers, cfgB.Topics)
	if d := diff(outA, outB); len(d) > 0 {
		t.Errorf("restarted run differs from the uninterrupted one (%d differences), first: %v", len(d), d[:min(10, len(d))])
	}
	for _, o := range []*outputs{outA, outB} {
		if len(o.dups) > 0 {
			t.Errorf("duplicates: %v", o.dups[:min(10, len(o.dups))])
		}
		if l := o.leaks(); len(l) > 0 {
			t.Errorf("planted secrets in the outputs: %v", l)
		}
	}
	checkSummaries(t, outB, sessions)
	if len(outA.commands) == 0 {
		t.Fatal("no commands")
	}
}

// A session left open is abandoned after the idle timeout, also when the processor
// restarted in between and its partition never saw another frame.
func TestIdleSessionIsAbandonedAfterRestart(t *testing.T) {
	const raw = "raw"
	brokers := newFake(t, raw, 2)
	s := sessiontest.Start(schemas.SSH, schemas.SessionStart{Subject: "ci", Target: "box"}, sessiontest.NewKey(1), time.Now().Add(-time.Minute))
	s.Add(schemas.Client, "ssh.channel.open", 0, []byte("\x00\x00\x00\x07session"))
	s.Add(schemas.Client, "ssh.request.exec", 0, []byte("\x00\x00\x00\x0asleep 3600"))
	produceFrames(t, producer(t, brokers), raw, s.Frames)

	cfg := testConfig(t, brokers, "idle", raw)
	r := start(t, cfg) // default idle timeout: the session stays active
	waitCaughtUp(t, brokers, cfg.Kafka.Group, raw, 30*time.Second, r.alive)
	r.stop(t)
	if sum := collect(t, brokers, cfg.Topics).final[s.ID]; sum.Status != schemas.StatusActive {
		t.Fatalf("summary before restart %+v", sum)
	}

	cfg.Sessions.IdleTimeout = 30 * time.Second
	r = start(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		o := collect(t, brokers, cfg.Topics)
		if sum, ok := o.final[s.ID]; ok && sum.Status == schemas.StatusAbandoned {
			if sum.Version != 2 || sum.EndedAt == nil || !sum.EndedAt.Equal(s.Frames[len(s.Frames)-1].TS) || sum.Commands != 1 {
				t.Errorf("summary %+v", sum)
			}
			var types []string
			for _, a := range o.audit {
				for _, typ := range []string{"session.abandoned", "command"} {
					if strings.Contains(a, `"type":"`+typ+`"`) {
						types = append(types, typ)
					}
				}
			}
			if len(types) != 2 {
				t.Errorf("audit records %v", types)
			}
			for _, c := range o.commands {
				if c.Status != "incomplete" || c.Text != "sleep 3600" {
					t.Errorf("command %+v", c)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session not abandoned")
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.stop(t)
}

func TestConfigErrors(t *testing.T) {
	env := func(string) (string, bool) { return "", false }
	for _, y := range []string{
		"kafka: {group: g}", // no brokers
		"kafka: {brokers: [x]}\ntopics: {frames: a, commands: a}", // same topic twice
		"kafka: {brokers: [x]}\ntopics: {audit_ocsf: tapline.audit}",
		"kafka: {brokers: [x]}\nschema_registry: {username: u, password_env: NOT_SET}",
		"kafka: {brokers: [x]}\ntrusted_gateway_keys: [nope]",
		"kafka: {brokers: [x]}\nmasking: {defaults: {detectors: {nope: true}}}",
		"kafka: {brokers: [x]}\nunknown: 1",
	} {
		if _, err := Parse([]byte(y), env); err == nil {
			t.Errorf("accepted: %s", y)
		}
	}
	c, err := Parse(nil, func(k string) (string, bool) { return "a:1,b:2", k == "TAPLINE_KAFKA_BROKERS" })
	if err != nil || len(c.Kafka.Brokers) != 2 || c.Topics.Raw != schemas.TopicFramesRaw || c.Topics.State != DefaultStateTopic ||
		c.Topics.AuditOCSF != "" {
		t.Errorf("defaults: %+v %v", c, err)
	}
}
