package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/kafkaconn/kafkaconntest"
	"github.com/tapline/tapline/schemas"
)

// The processor's clients (admin, transactional group session, state loader) all
// reach a cluster that takes only TLS with SCRAM, configured through the YAML keys.
func TestProcessesOverTLSAndSCRAM(t *testing.T) {
	const raw = "raw"
	k := kafkaconntest.Start(t, kfake.SeedTopics(2, raw))
	y := fmt.Sprintf(`
kafka:
  group: sec-group
  transactional_id: sec-txn
  transaction_timeout: 20s
  tls: {ca_file: %s}
  sasl: {mechanism: SCRAM-SHA-256, username: %s, password_file: %s}
topics: {raw: %s, frames: sec.frames, commands: sec.commands, sessions: sec.sessions, audit: sec.audit, state: sec.state}
`, k.CAFile, kafkaconntest.User, k.Security.SASL.PasswordFile, raw)
	cfg, err := Parse([]byte(y), func(name string) (string, bool) {
		return strings.Join(k.Brokers, ","), name == "TAPLINE_KAFKA_BROKERS"
	})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.Kafka.Security.Opts(cfg.lookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(k.Brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sessions := fixtureSessions(3, t0)
	produceFrames(t, cl, raw, interleave(sessions, 1))

	start(t, cfg)
	// Every session's final summary appears, committed, in the sessions topic.
	rd, err := kgo.NewClient(append(opts, kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(cfg.Topics.Sessions),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < len(sessions) {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("summaries for %d of %d sessions after a minute", len(seen), len(sessions))
		}
		fs.EachRecord(func(rec *kgo.Record) {
			s, err := schemas.SessionCodec().Decode(rec.Value)
			if err != nil {
				t.Fatalf("decode session summary: %v", err)
			}
			seen[s.SessionID] = true
		})
	}
	for _, s := range sessions {
		if !seen[s.ID] {
			t.Errorf("no summary for session %s", s.ID)
		}
	}
}

func TestConfigKafkaSecurityErrors(t *testing.T) {
	env := func(name string) (string, bool) { return "127.0.0.1:9092", name == "TAPLINE_KAFKA_BROKERS" }
	_, err := Parse([]byte("kafka: {sasl: {mechanism: GSSAPI, username: u, password_env: NOPE}}"), env)
	for _, want := range []string{`kafka.sasl.mechanism: "GSSAPI" not supported`, "kafka.sasl.password_env: NOPE not set", "kafka.sasl: requires kafka.tls"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := Parse([]byte("kafka: {tls: {cafile: x}}"), env); err == nil || !strings.Contains(err.Error(), "field cafile not found") {
		t.Errorf("unknown key under kafka.tls: %v", err)
	}
}
