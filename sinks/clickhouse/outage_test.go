package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// TestSinkRidesOutClickHouseOutage runs `tapline sink` against a real ClickHouse
// server (Debian's 18.16, reduced schema) and real Kafka, stops the server while
// hundreds of megabytes arrive, and starts it again: the sink's memory stays bounded
// while the backlog waits in Kafka, no offset moves while nothing can be stored, and
// afterwards every frame is stored exactly once.
func TestSinkRidesOutClickHouseOutage(t *testing.T) {
	brokers := testenv.Kafka(t)
	srv := storetest.StartClickHouse(t)
	k := storetest.NewKafka(t, brokers, 3)
	bin := storetest.BuildTapline(t, "")

	dir := t.TempDir()
	group := "sink-outage-" + filepath.Base(dir)
	cfg := filepath.Join(dir, "sink.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  brokers: [%q]
  group: %s
  instance_id: outage-test-sink
  frames_topic: %s
  commands_topic: %s
  sessions_topic: %s
  batch_rows: 2000
  batch_bytes: 4194304
  batch_wait: 200ms
  fetch_max_bytes: 4194304
  max_concurrent_fetches: 1
  retry_max: 1s
clickhouse:
  addr: [%q]
  database: tapline
  schema: legacy
`, k.Brokers[0], group, k.Topics[0], k.Topics[1], k.Topics[2], srv.Addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := storetest.Start(t, "sink", bin, nil, "sink", "--config", cfg)

	const payload = 8 << 10
	frames, payloadBytes := 0, int64(0)
	produce := func(sessions, n int) int {
		records := 0
		for i := range sessions {
			r := storetest.NewRecordingSized(fmt.Sprintf("agent-%d", i), "app", time.Now(), n, payload)
			records += k.Produce(t, r)
			frames += n
			for _, f := range r.Frames {
				payloadBytes += int64(len(f.Payload))
			}
		}
		return records
	}
	before := produce(4, 250)
	k.WaitCommitted(t, group, 60*time.Second, func(c, e int64) bool { return c == int64(before) && e == int64(before) })

	srv.Stop()
	outageStart := time.Now()
	rssDone := make(chan int64)
	stop := make(chan struct{})
	go func() {
		var peak int64
		for {
			if rss, err := storetest.RSS(sink.Cmd.Process.Pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				rssDone <- peak
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	atOutage := payloadBytes
	during := produce(60, 1000) // ~235 MiB of payloads while the server is down
	time.Sleep(3 * time.Second) // let the sink fetch, retry and back off
	committed, end := k.Offsets(t, group)
	close(stop)
	peak := <-rssDone
	backlog := payloadBytes - atOutage
	t.Logf("outage of %v: %d records (~%d MiB) produced, committed offsets %d of %d, sink peak RSS %d MiB",
		time.Since(outageStart).Round(time.Second), during, backlog>>20, committed, end, peak>>20)
	if committed != int64(before) {
		t.Errorf("offsets moved from %d to %d while ClickHouse was down", before, committed)
	}
	const bound = 160 << 20
	if peak > bound || peak >= backlog {
		t.Errorf("sink RSS peaked at %d MiB during the outage; bound %d MiB, backlog %d MiB", peak>>20, bound>>20, backlog>>20)
	}

	srv.Start()
	total := before + during
	k.WaitCommitted(t, group, 3*time.Minute, func(c, e int64) bool { return c == int64(total) })
	if err := sink.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := sink.Cmd.Wait(); err != nil {
		t.Fatalf("sink after SIGTERM: %v", err)
	}

	conn, err := clickhouse.DialServer(context.Background(), clickhouse.ServerConfig{Addr: []string{srv.Addr}, Database: "tapline"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n := storetest.Count(t, conn, "SELECT count() FROM frames FINAL", nil); n != int64(frames) {
		t.Errorf("frames FINAL: %d rows, want %d", n, frames)
	}
	if n := storetest.Count(t, conn, "SELECT uniqExact(session_id, seq) FROM frames", nil); n != int64(frames) {
		t.Errorf("%d distinct (session_id, seq), want %d: frames lost", n, frames)
	}
	if n := storetest.Count(t, conn, "SELECT count() FROM frames WHERE length(payload) = 8192", nil); n == 0 {
		t.Error("no 8 KiB payloads stored")
	}
}
