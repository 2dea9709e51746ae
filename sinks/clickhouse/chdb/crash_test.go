//go:build chdb

package chdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// TestSinkKilledMidBatch runs `tapline sink` on chDB against real Kafka, kills it with
// SIGKILL several times while it writes, restarts it, and then reads every session
// back: each (session_id, seq) exactly once, every command and summary present.
func TestSinkKilledMidBatch(t *testing.T) {
	brokers := testenv.Kafka(t)
	k := storetest.NewKafka(t, brokers, 3)
	bin := storetest.BuildTapline(t, "chdb")

	var rs []storetest.Recording
	want := map[string][]schemas.Frame{} // as a consumer decodes them
	start := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for i := range 24 {
		rs = append(rs, storetest.NewRecordingSized(fmt.Sprintf("agent-%d", i%4), "app", start.Add(time.Duration(i)*time.Second), 500, 2048))
	}
	total := k.Produce(t, rs...)
	for _, r := range rs {
		for i := range r.Frames {
			b, _ := schemas.FrameCodec().Encode(&r.Frames[i])
			f, err := schemas.FrameCodec().Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want[r.ID] = append(want[r.ID], f)
		}
	}

	dir := t.TempDir()
	group := "sink-crash-" + filepath.Base(dir)
	cfg := filepath.Join(dir, "sink.yaml")
	writeFile(t, cfg, fmt.Sprintf(`kafka:
  brokers: [%q]
  group: %s
  instance_id: crash-test-sink
  frames_topic: %s
  commands_topic: %s
  sessions_topic: %s
  batch_rows: 700
  batch_wait: 100ms
clickhouse:
  chdb_path: %s
`, k.Brokers[0], group, k.Topics[0], k.Topics[1], k.Topics[2], filepath.Join(dir, "chdb")))

	env := []string{"CHDB_LIB_PATH=" + os.Getenv("CHDB_LIB_PATH")}
	framesDir := filepath.Join(dir, "chdb", "data", Database, "frames")
	var last int64
	for kill := range 4 {
		p := storetest.Start(t, fmt.Sprintf("sink-%d", kill), bin, env, "sink", "--config", cfg)
		k.WaitCommitted(t, group, 90*time.Second, func(c, e int64) bool { return c > last && c < e || c == e })
		if kill%2 == 0 {
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		} else {
			// Right after a batch's frames became a part: the batch's other tables and
			// its offset commit are still to come.
			waitNewPart(t, framesDir)
		}
		if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Cmd.Wait() //nolint:errcheck // killed
		last, _ = k.Offsets(t, group)
		t.Logf("kill %d: %d of %d offsets committed", kill+1, last, total)
	}
	p := storetest.Start(t, "sink-final", bin, env, "sink", "--config", cfg)
	k.WaitCommitted(t, group, 120*time.Second, func(c, e int64) bool { return c == e && e == int64(total) })
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("sink after SIGTERM: %v", err)
	}

	conn, err := Dial(filepath.Join(dir, "chdb"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := clickhouse.NewStore(conn, clickhouse.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	raw := storetest.Count(t, conn, "SELECT count() FROM frames", nil)
	t.Logf("frames: %d rows in the table (before FINAL) for %d frames", raw, 24*500)
	for _, r := range rs {
		seen := make([]int, len(r.Frames))
		err := s.Frames(ctx, r.ID, 0, 1<<40, func(f *schemas.Frame) error {
			seen[f.Seq]++
			if !reflect.DeepEqual(*f, want[r.ID][f.Seq]) {
				return fmt.Errorf("frame %d differs from what was produced", f.Seq)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for seq, n := range seen {
			if n != 1 {
				t.Fatalf("session %s seq %d read %d times, want exactly once", r.ID, seq, n)
			}
		}
		cmds, err := s.Commands(ctx, clickhouse.CommandFilter{SessionID: r.ID})
		if err != nil || len(cmds) != len(r.Commands) {
			t.Fatalf("session %s: %d commands (%v), want %d", r.ID, len(cmds), err, len(r.Commands))
		}
		got, err := s.GetSession(ctx, r.ID)
		if err != nil || got.Version != 2 {
			t.Fatalf("session %s summary: version %d, %v", r.ID, got.Version, err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitNewPart returns as soon as a new data part appears in a table directory.
func waitNewPart(t *testing.T, dir string) {
	t.Helper()
	parts := func() int {
		es, _ := os.ReadDir(dir)
		n := 0
		for _, e := range es {
			if name := e.Name(); name != "" && name[0] >= '0' && name[0] <= '9' {
				n++
			}
		}
		return n
	}
	before := parts()
	deadline := time.Now().Add(30 * time.Second)
	for parts() == before {
		if time.Now().After(deadline) {
			t.Fatalf("no new part in %s within 30s", dir)
		}
		time.Sleep(200 * time.Microsecond)
	}
}
