package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// legacyServer opens a store with the reduced schema on the Debian ClickHouse
// server, in a database of its own.
func legacyServer(t *testing.T) (clickhouse.Store, clickhouse.Conn, clickhouse.ServerConfig) {
	t.Helper()
	addr := testenv.ClickHouse(t).Addr
	sc := clickhouse.ServerConfig{Addr: []string{addr}, Database: fmt.Sprintf("tapline_test_%d", rand.Uint64())}
	ctx := context.Background()
	conn, err := clickhouse.DialServer(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := clickhouse.NewStore(conn, clickhouse.Config{Schema: clickhouse.SchemaLegacy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+sc.Database, nil)
		s.Close()
	})
	return s, conn, sc
}

func TestServerLegacyMigrateAndInsert(t *testing.T) {
	ctx := context.Background()
	s, conn, _ := legacyServer(t)
	for i := range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	_, ms, _ := clickhouse.Migrations(clickhouse.SchemaLegacy)
	if n := storetest.Count(t, conn, "SELECT count() FROM schema_migrations", nil); n != int64(len(ms)) {
		t.Errorf("schema_migrations has %d rows after two runs, want %d", n, len(ms))
	}
	r := storetest.NewRecording("alice", "app", time.Now().UTC(), 40)
	r.Sessions[1].Integrity = []string{"seq gap"}
	b := &clickhouse.Batch{Frames: r.Frames, Commands: r.Commands, Sessions: r.Sessions, Token: "t1"}
	if err := s.Insert(ctx, b); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]int64{"frames": 40, "commands": int64(len(r.Commands)), "sessions": 1, "integrity_alerts": 1} {
		if n := storetest.Count(t, conn, "SELECT count() FROM "+table+" FINAL", nil); n != want {
			t.Errorf("%s FINAL: %d rows, want %d", table, n, want)
		}
	}
	// Payload bytes arrive intact: compare a digest computed by the server.
	if n := storetest.Count(t, conn, "SELECT count() FROM frames WHERE kind = 'DataRow' AND length(payload) = 256", nil); n != int64((40-2)/2) {
		t.Errorf("%d DataRow payloads of 256 bytes, want %d", n, (40-2)/2)
	}
}

// TestServerReadOnlySQL: auditors' SQL over clickhouse-go runs read-only with its
// limits, and values of every common type come back normalized.
func TestServerReadOnlySQL(t *testing.T) {
	ctx := context.Background()
	s, conn, _ := legacyServer(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := clickhouse.CollectSQL(ctx, s, `SELECT toUInt8(1) AS u, toInt32(-2) AS i, 'x' AS s, [1, 2] AS a, toNullable(NULL) AS n,
toDateTime('2024-05-01 10:11:12', 'UTC') AS t, 2.5 AS f, toUUID('00112233-4455-6677-8899-aabbccddeeff') AS id`, clickhouse.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{uint64(1), int64(-2), "x", []any{uint64(1), uint64(2)}, nil,
		time.Date(2024, 5, 1, 10, 11, 12, 0, time.UTC), 2.5, "00112233-4455-6677-8899-aabbccddeeff"}
	if len(res.Rows) != 1 || !reflect.DeepEqual(res.Rows[0], want) {
		t.Errorf("row %#v\nwant %#v", res.Rows, want)
	}
	if res.Columns[3].Name != "a" || res.Columns[3].Type != "Array(UInt8)" {
		t.Errorf("columns %+v", res.Columns)
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "DROP TABLE frames", clickhouse.Limits{}); err == nil {
		t.Error("DROP TABLE ran as read-only SQL")
	}
	if n := storetest.Count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'frames'", nil); n != 1 {
		t.Error("frames was dropped through read-only SQL")
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT number FROM system.numbers LIMIT 100", clickhouse.Limits{MaxRows: 10}); err == nil {
		t.Error("100 rows with MaxRows 10 returned without error")
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT sleep(3)", clickhouse.Limits{MaxExecutionTime: time.Second}); err == nil {
		// sleep(3) is rejected outright by some versions; a timeout is the other outcome.
		t.Error("a 3 s statement with a 1 s limit returned without error")
	}
}

func TestServerTooOldForFullSchema(t *testing.T) {
	ctx := context.Background()
	_, conn, _ := legacyServer(t)
	s, err := clickhouse.NewStore(conn, clickhouse.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "older than 24.8") {
		t.Errorf("full schema on 18.16: err = %v, want a version error", err)
	}
}

// The query role never migrates: CheckSchema says what is missing and who applies it.
func TestServerCheckSchema(t *testing.T) {
	ctx := context.Background()
	s, _, _ := legacyServer(t)
	if err := s.CheckSchema(ctx); !errors.Is(err, clickhouse.ErrSchemaBehind) || !strings.Contains(err.Error(), "tapline sink") {
		t.Fatalf("fresh database: %v, want ErrSchemaBehind naming the sink", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("migrated: %v", err)
	}
}

// tapline_reader, the query role's login (readonly=2 profile, as shipped), reads and
// runs auditors' SQL with their limits, and cannot write.
func TestServerReaderLoginCannotWrite(t *testing.T) {
	ctx := context.Background()
	s, conn, sc := legacyServer(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sc.Username = "tapline_reader"
	rc, err := clickhouse.DialServer(ctx, sc)
	if err != nil && strings.Contains(err.Error(), "tapline_reader") {
		t.Skipf("the running test services predate the tapline_reader login (restart them): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	reader, err := clickhouse.NewStore(rc, clickhouse.Config{Schema: clickhouse.SchemaLegacy})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := reader.CheckSchema(ctx); err != nil {
		t.Fatalf("reader CheckSchema: %v", err)
	}
	r := storetest.NewRecording("alice", "app", time.Now().UTC(), 4)
	if err := reader.Insert(ctx, &clickhouse.Batch{Frames: r.Frames}); err == nil {
		t.Error("the reader login inserted frames")
	}
	if err := rc.Exec(ctx, "DROP TABLE frames", nil); err == nil {
		t.Error("the reader login dropped a table")
	}
	if n := storetest.Count(t, conn, "SELECT count() FROM frames", nil); n != 0 {
		t.Errorf("frames has %d rows after the reader's insert", n)
	}
	if _, err := clickhouse.CollectSQL(ctx, reader, "SELECT count() FROM frames", clickhouse.Limits{}); err != nil {
		t.Errorf("reader SQL: %v", err)
	}
	if _, err := clickhouse.CollectSQL(ctx, reader, "SELECT number FROM system.numbers LIMIT 100", clickhouse.Limits{MaxRows: 10}); err == nil {
		t.Error("row limit not applied to the reader")
	}
}

// The API's reads (session, commands, frames, search) on a server that predates
// query parameters: the values are written into the SQL as literals, so a
// subject made of quotes, backslashes and placeholders matches itself only.
func TestServerFramesAcrossGaps(t *testing.T) {
	s, _, _ := legacyServer(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	storetest.FramesAcrossGaps(t, s)
}

func TestServerLegacyParameterisedReads(t *testing.T) {
	ctx := context.Background()
	s, _, _ := legacyServer(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	evil := "x' OR 1=1 OR subject = '\\' --\x00\t\n}{y:String}"
	r := storetest.NewRecording(evil, "app", time.Now().UTC(), 40)
	other := storetest.NewRecording("alice", "app", time.Now().UTC(), 4)
	for _, rec := range []storetest.Recording{r, other} {
		if err := s.Insert(ctx, &clickhouse.Batch{Frames: rec.Frames, Commands: rec.Commands, Sessions: rec.Sessions}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetSession(ctx, r.ID)
	if err != nil {
		t.Fatalf("GetSession on 18.16: %v", err)
	}
	if got.SessionID != r.ID || got.Subject != evil {
		t.Fatalf("GetSession: %q of %q, want %q of %q", got.SessionID, got.Subject, r.ID, evil)
	}
	if _, err := s.GetSession(ctx, "nobody' OR '1'='1"); !errors.Is(err, clickhouse.ErrNotFound) {
		t.Errorf("GetSession of an injected id: %v, want ErrNotFound", err)
	}
	cmds, err := s.Commands(ctx, clickhouse.CommandFilter{SessionID: r.ID})
	if err != nil {
		t.Fatalf("Commands on 18.16: %v", err)
	}
	if len(cmds) != len(r.Commands) {
		t.Errorf("Commands: %d, want %d", len(cmds), len(r.Commands))
	}
	var seqs []int64
	if err := s.Frames(ctx, r.ID, 0, 1<<40, func(f *schemas.Frame) error { seqs = append(seqs, f.Seq); return nil }); err != nil {
		t.Fatalf("Frames on 18.16: %v", err)
	}
	if len(seqs) != 40 || seqs[0] != 0 || seqs[39] != 39 {
		t.Errorf("Frames: %d frames %v, want seq 0..39", len(seqs), seqs)
	}
	list, err := s.ListSessions(ctx, clickhouse.SessionFilter{Subject: evil})
	if err != nil {
		t.Fatalf("ListSessions on 18.16: %v", err)
	}
	if len(list) != 1 || list[0].SessionID != r.ID {
		t.Errorf("ListSessions by the evil subject: %d sessions, want exactly %s", len(list), r.ID)
	}
	if list, err = s.ListSessions(ctx, clickhouse.SessionFilter{Subject: "nobody' OR '1'='1"}); err != nil || len(list) != 0 {
		t.Errorf("an injected OR: %d sessions, err %v", len(list), err)
	}
}
