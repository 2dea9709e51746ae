package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
	cfg := &sinkConfig{}
	cfg.ClickHouse.CHDBPath = t.TempDir()
	cfg.ClickHouse.Addr = []string{"127.0.0.1:9000"}
	if _, err := openSinkStore(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("addr and chdb_path: err = %v", err)
	}
	if openCHDB == nil {
		cfg.ClickHouse.Addr = nil
		if _, err := openSinkStore(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "-tags chdb") {
			t.Errorf("chdb_path without chDB in the binary: err = %v", err)
		}
	}
}
