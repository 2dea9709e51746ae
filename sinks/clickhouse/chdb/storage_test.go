//go:build chdb

package chdb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

func configFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.xml")
	writeFile(t, path, content)
	return path
}

// TestTieredStorageMovesOldPartitions: with a two-volume policy (the cold volume a
// local disk here; S3 in deploy/clickhouse/storage.xml), Migrate switches the tables
// to the policy and day partitions older than cold_after_days move to the cold disk.
func TestTieredStorageMovesOldPartitions(t *testing.T) {
	cold := t.TempDir()
	cfgFile := configFile(t, `<clickhouse><storage_configuration>
  <disks><cold_local><path>`+cold+`/</path></cold_local></disks>
  <policies><tiered><volumes>
    <default><disk>default</disk></default>
    <cold><disk>cold_local</disk></cold>
  </volumes></tiered></policies>
</storage_configuration></clickhouse>`)
	conn, err := DialConfig(t.TempDir(), cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clickhouse.Config{
		Retention: clickhouse.Retention{FramesDays: 30, CommandsDays: 30, SessionsDays: 30, IntegrityAlertsDays: 30},
		Storage:   clickhouse.Storage{Policy: "tiered", ColdAfterDays: 2},
	}
	s, err := clickhouse.NewStore(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil { // unchanged: nothing to alter
		t.Fatal(err)
	}
	old := storetest.NewRecording("alice", "app", time.Now().Add(-5*24*time.Hour), 10)
	fresh := storetest.NewRecording("bob", "app", time.Now(), 10)
	b := &clickhouse.Batch{Frames: append(old.Frames, fresh.Frames...)}
	if err := s.Insert(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE frames FINAL", nil); err != nil {
		t.Fatal(err)
	}
	disk := func(id string) string {
		rows, err := conn.Query(ctx, `SELECT DISTINCT p.disk_name FROM system.parts AS p
WHERE p.database = currentDatabase() AND p.table = 'frames' AND p.active
AND p.partition = (SELECT toString(toYYYYMMDD(min(ts))) FROM frames WHERE session_id = {id:String})`,
			clickhouse.Params{"id": id}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		return strings.Join(names, ",")
	}
	if d := disk(old.ID); d != "cold_local" {
		t.Errorf("5-day-old partition on disk %q, want cold_local", d)
	}
	if d := disk(fresh.ID); d != "default" {
		t.Errorf("today's partition on disk %q, want default", d)
	}
	n := storetest.Count(t, conn, "SELECT count() FROM frames FINAL", nil)
	if n != 20 {
		t.Errorf("%d frames readable across volumes, want 20", n)
	}
}

// TestDeployStorageConfigLoads: the shipped S3 policy loads into the engine and
// Migrate can put the tables on it (no bucket here, so nothing is moved).
func TestDeployStorageConfigLoads(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(storetest.RepoRoot(), "deploy", "clickhouse", "storage.xml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xml := strings.NewReplacer(
		"/var/lib/clickhouse/", dir+"/",
		"<use_environment_credentials>true</use_environment_credentials>",
		"<use_environment_credentials>false</use_environment_credentials><skip_access_check>true</skip_access_check>",
	).Replace(string(src))
	t.Setenv("TAPLINE_S3_ENDPOINT", "http://127.0.0.1:9/tapline-test/prefix/")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	s, err := OpenConfig(filepath.Join(dir, "data"), configFile(t, xml), clickhouse.Config{
		Retention: clickhouse.Retention{FramesDays: 365},
		Storage:   clickhouse.Storage{Policy: "tiered", ColdAfterDays: 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate onto the shipped policy: %v", err)
	}
}
