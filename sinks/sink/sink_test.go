package sink

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"log/slog"

	"github.com/tapline/tapline/sinks/clickhouse"
)

func loadSinkConfig(path string) (*Config, error) { return Load(path, nil) }

// TestSinkConfigInDocs parses the example configuration of docs/storage.md, so the
// documented keys stay the ones the sink reads.
func TestSinkConfigInDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "storage.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in docs/storage.md")
	}
	path := filepath.Join(t.TempDir(), "sink.yaml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadSinkConfig(path)
	if err != nil {
		t.Fatalf("documented example: %v", err)
	}
	k, ch := cfg.Kafka, cfg.ClickHouse
	if len(k.Brokers) != 2 || k.BatchWait != time.Second || k.RetryMax != 30*time.Second || k.BatchRows != 10000 {
		t.Errorf("kafka section read as %+v", k.WriterConfig)
	}
	if len(ch.Addr) != 2 || ch.PasswordEnv != "CLICKHOUSE_PASSWORD" || !ch.TLS || ch.Retention.FramesDays != 90 ||
		ch.Storage.Policy != "tiered" || ch.Storage.ColdAfterDays != 7 || ch.Schema != "full" {
		t.Errorf("clickhouse section read as %+v", ch)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9466" {
		t.Errorf("metrics.listen = %q", cfg.Metrics.Listen)
	}
}

func TestSinkConfigRejectsUnknownKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sink.yaml")
	if err := os.WriteFile(path, []byte("clickhouse:\n  adress: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSinkConfig(path); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("misspelt key: err = %v", err)
	}
}

func TestSinkStoreChoice(t *testing.T) {
	cfg := &Config{}
	cfg.ClickHouse.CHDBPath = t.TempDir()
	cfg.ClickHouse.Addr = []string{"127.0.0.1:9000"}
	if _, err := clickhouse.Open(context.Background(), cfg.ClickHouse); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("addr and chdb_path: err = %v", err)
	}
	if clickhouse.Embedded.Open == nil {
		cfg.ClickHouse.Addr = nil
		if _, err := clickhouse.Open(context.Background(), cfg.ClickHouse); err == nil || !strings.Contains(err.Error(), "-tags chdb") {
			t.Errorf("chdb_path without chDB in the binary: err = %v", err)
		}
	}
}

func TestSinkKafkaSecurity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sink.yaml")
	write := func(y string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`kafka:
  brokers: [kafka:9093]
  group: g
  tls: {ca_file: /etc/kafka-ca/ca.crt, cert_file: /etc/kafka-user/user.crt, key_file: /etc/kafka-user/user.key}
  sasl: {mechanism: SCRAM-SHA-512, username: tapline-sink, password_file: /etc/kafka-user/password}
`)
	cfg, err := loadSinkConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Kafka
	if k.Group != "g" || k.TLS == nil || k.TLS.KeyFile != "/etc/kafka-user/user.key" || k.SASL == nil || k.SASL.Username != "tapline-sink" {
		t.Fatalf("kafka section read as %+v tls=%+v sasl=%+v", k.WriterConfig, k.TLS, k.SASL)
	}

	write("kafka:\n  sasl: {mechanism: PLAIN, user: x}\n")
	if _, err := loadSinkConfig(path); err == nil || !strings.Contains(err.Error(), "field user not found") {
		t.Errorf("unknown key under kafka.sasl: %v", err)
	}

	// A bad setting stops the sink before it waits for ClickHouse.
	write("kafka:\n  brokers: [127.0.0.1:1]\n  tls: {}\n  sasl: {mechanism: GSSAPI, username: u, password_env: TAPLINE_TEST_UNSET_PW}\nclickhouse:\n  addr: [127.0.0.1:1]\n")
	if cfg, err = loadSinkConfig(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = Run(ctx, cfg, slog.Default())
	if err == nil || !strings.Contains(err.Error(), `kafka.sasl.mechanism: "GSSAPI" not supported`) || ctx.Err() != nil {
		t.Errorf("Run with a bad mechanism: %v", err)
	}
}
