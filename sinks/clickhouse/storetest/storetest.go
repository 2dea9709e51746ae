package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Dial returns a fresh connection to an empty database. The suite wraps it in a
// Store with clickhouse.NewStore and closes it at the end of each subtest.
type Dial func(t *testing.T) clickhouse.Conn

// Run runs the full-schema store suite. Subtests run one after another: chDB allows
// a single session per process.
func Run(t *testing.T, dial Dial) {
	t.Run("MigrateFreshThenAgain", func(t *testing.T) { testMigrate(t, dial) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, dial) })
	t.Run("FramesAcrossGaps", func(t *testing.T) { s, _ := open(t, dial, clickhouse.Config{}); FramesAcrossGaps(t, s) })
	t.Run("DedupToken", func(t *testing.T) { testDedup(t, dial) })
	t.Run("LatestSessionVersionWins", func(t *testing.T) { testLatestVersion(t, dial) })
	t.Run("ListSessionsFilters", func(t *testing.T) { testListFilters(t, dial) })
	t.Run("ParametersAreNotSQL", func(t *testing.T) { testInjection(t, dial) })
	t.Run("ReadOnlySQL", func(t *testing.T) { testReadOnlySQL(t, dial) })
	t.Run("RetentionTTL", func(t *testing.T) { testTTL(t, dial) })
}

func open(t *testing.T, dial Dial, cfg clickhouse.Config) (clickhouse.Store, clickhouse.Conn) {
	t.Helper()
	c := dial(t)
	s, err := clickhouse.NewStore(c, cfg)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s, c
}

// Count runs a count query over conn (no read-only wrapping).
func Count(t *testing.T, c clickhouse.Conn, sql string, p clickhouse.Params) int64 {
	t.Helper()
	rows, err := c.Query(context.Background(), sql, p, nil)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func insert(t *testing.T, s clickhouse.Store, token string, rs ...Recording) {
	t.Helper()
	b := &clickhouse.Batch{Token: token}
	for _, r := range rs {
		b.Frames = append(b.Frames, r.Frames...)
		b.Commands = append(b.Commands, r.Commands...)
		b.Sessions = append(b.Sessions, r.Sessions...)
	}
	if err := s.Insert(context.Background(), b); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

func testMigrate(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, c := open(t, dial, clickhouse.Config{})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	_, ms, err := clickhouse.Migrations(clickhouse.SchemaFull)
	if err != nil {
		t.Fatal(err)
	}
	if got := Count(t, c, "SELECT count() FROM schema_migrations", nil); got != int64(len(ms)) {
		t.Errorf("schema_migrations has %d rows after two runs, want one per migration (%d)", got, len(ms))
	}
	for _, table := range []string{"frames", "commands", "sessions", "integrity_alerts"} {
		n := Count(t, c, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
			clickhouse.Params{"t": table})
		if n != 1 {
			t.Errorf("table %s missing after migrate", table)
		}
	}
}

func testRoundTrip(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, _ := open(t, dial, clickhouse.Config{})
	start := time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC()
	long := NewRecording("alice", "app", start, 301) // more than two pages of frames
	short := NewRecording("bob", "box", start.Add(time.Minute), 5)
	insert(t, s, "rt", long, short)

	var got []schemas.Frame
	err := s.Frames(ctx, long.ID, 0, 1<<62, func(f *schemas.Frame) error {
		got = append(got, *f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(long.Frames) {
		t.Fatalf("Frames returned %d frames, want %d", len(got), len(long.Frames))
	}
	prev := schemas.ZeroHash
	for i := range got {
		if !reflect.DeepEqual(got[i], long.Frames[i]) {
			t.Fatalf("frame %d differs after the round trip:\n got %+v\nwant %+v", i, got[i], long.Frames[i])
		}
		if err := schemas.CheckLink(&got[i], prev); err != nil {
			t.Fatalf("chain broken after the round trip: %v", err)
		}
		prev = got[i].Hash
	}

	var window []int64
	if err := s.Frames(ctx, long.ID, 10, 12, func(f *schemas.Frame) error { window = append(window, f.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(window, []int64{10, 11, 12}) {
		t.Errorf("Frames(10..12) = %v", window)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Frames(ctx, long.ID, 0, 1000, func(*schemas.Frame) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Frames did not stop at the callback's error: n=%d err=%v", n, err)
	}
	// A context ended during the read ends it with the context's error, even while
	// the next page is being read ahead.
	cctx, cancel := context.WithCancel(ctx)
	n = 0
	err = s.Frames(cctx, long.ID, 0, int64(len(long.Frames)), func(*schemas.Frame) error { n++; cancel(); return nil })
	cancel()
	if !errors.Is(err, context.Canceled) || n >= len(long.Frames) {
		t.Errorf("Frames went on after its context ended: n=%d of %d, err=%v", n, len(long.Frames), err)
	}

	cmds, err := s.Commands(ctx, clickhouse.CommandFilter{SessionID: long.ID})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cmds, long.Commands) {
		t.Fatalf("commands differ after the round trip: got %d, want %d; first got %+v want %+v",
			len(cmds), len(long.Commands), first(cmds), first(long.Commands))
	}
	page, err := s.Commands(ctx, clickhouse.CommandFilter{SessionID: long.ID, FromSeq: cmds[9].CommandSeq + 1, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 5 || page[0].CommandSeq != cmds[10].CommandSeq {
		t.Errorf("second commands page starts at %v, want %d", first(page).CommandSeq, cmds[10].CommandSeq)
	}

	sess, err := s.GetSession(ctx, long.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := long.Sessions[1]; !reflect.DeepEqual(sess, want) {
		t.Errorf("session differs after the round trip:\n got %+v\nwant %+v", sess, want)
	}
	if _, err := s.GetSession(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, clickhouse.ErrNotFound) {
		t.Errorf("unknown session: err = %v, want ErrNotFound", err)
	}
}

// FramesAcrossGaps checks a migrated store: Frames reads a session in windows of
// seqs, and frames after a stretch of missing seqs longer than any window
// (deleted, or never stored) must still be read, or verify would not see what
// follows a gap.
func FramesAcrossGaps(t *testing.T, s clickhouse.Store) {
	ctx := context.Background()
	r := NewRecording("carol", "app", time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC(), 20)
	want := make([]int64, len(r.Frames))
	for i := range r.Frames {
		// 0..4 inside the first window, 5..9 past the first and a full later one,
		// 10..19 past another long gap, the last one alone.
		shift := [...]int64{0, 40000, 100000, 300000}[min(i/5, 3)]
		if i == len(r.Frames)-1 {
			shift = 400000
		}
		r.Frames[i].Seq += shift
		want[i] = r.Frames[i].Seq
	}
	insert(t, s, "gaps", r)
	var got []int64
	if err := s.Frames(ctx, r.ID, 0, 1<<62, func(f *schemas.Frame) error { got = append(got, f.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Frames across gaps = %v, want %v", got, want)
	}
	got = got[:0]
	if err := s.Frames(ctx, r.ID, 40000, 300000, func(f *schemas.Frame) error { got = append(got, f.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want[5:15]) {
		t.Errorf("Frames(40000..300000) = %v, want %v", got, want[5:15])
	}
}

func first[T any](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	return xs[0]
}

func testDedup(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, c := open(t, dial, clickhouse.Config{})
	r := NewRecording("carol", "app", time.Now().UTC(), 50)
	insert(t, s, "tapline.frames:0:100-149", r)
	insert(t, s, "tapline.frames:0:100-149", r) // a retry of the same batch
	p := clickhouse.Params{"id": r.ID}
	if n := Count(t, c, "SELECT count() FROM frames WHERE session_id = {id:String}", p); n != 50 {
		t.Errorf("same token twice: %d frame rows stored, want 50 (insert deduplication)", n)
	}
	insert(t, s, "tapline.frames:0:100-120", r) // re-read after a crash, batched differently
	raw := Count(t, c, "SELECT count() FROM frames WHERE session_id = {id:String}", p)
	final := Count(t, c, "SELECT count() FROM frames FINAL WHERE session_id = {id:String}", p)
	if raw != 100 || final != 50 {
		t.Errorf("different token: raw %d (want 100 before a merge), FINAL %d (want 50)", raw, final)
	}
	seen := map[int64]int{}
	if err := s.Frames(ctx, r.ID, 0, 1000, func(f *schemas.Frame) error { seen[f.Seq]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for seq := range int64(50) {
		if seen[seq] != 1 {
			t.Errorf("seq %d read %d times, want once", seq, seen[seq])
		}
	}
	cmds, err := s.Commands(ctx, clickhouse.CommandFilter{SessionID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != len(r.Commands) {
		t.Errorf("commands read %d, want %d", len(cmds), len(r.Commands))
	}
}

func testLatestVersion(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, c := open(t, dial, clickhouse.Config{})
	r := NewRecording("dave", "app", time.Now().UTC(), 4)
	r.Sessions[1].Integrity = []string{"seq gap: 2..3 missing"}
	// The ended summary arrives first, the earlier one after it (other partitions,
	// a replay): the higher version still wins.
	r.Sessions[0], r.Sessions[1] = r.Sessions[1], r.Sessions[0]
	insert(t, s, "", r)
	got, err := s.GetSession(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Status != schemas.StatusEnded {
		t.Errorf("GetSession returned version %d (%s), want 2 (ended)", got.Version, got.Status)
	}
	active, err := s.ListSessions(ctx, clickhouse.SessionFilter{Status: schemas.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 0 {
		t.Errorf("status=active matched a superseded version: %+v", active)
	}
	if n := Count(t, c, "SELECT count() FROM integrity_alerts FINAL WHERE session_id = {id:String} AND alert = 'seq gap: 2..3 missing'",
		clickhouse.Params{"id": r.ID}); n != 1 {
		t.Errorf("integrity_alerts has %d rows for the session's alert, want 1", n)
	}
	insert(t, s, "", r) // the same summaries again: still one alert
	if n := Count(t, c, "SELECT count() FROM integrity_alerts FINAL WHERE session_id = {id:String}", clickhouse.Params{"id": r.ID}); n != 1 {
		t.Errorf("integrity_alerts has %d rows after a repeat, want 1", n)
	}
}

func ids(ss []schemas.Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.SessionID)
	}
	return out
}

func testListFilters(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, _ := open(t, dial, clickhouse.Config{})
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Second).UTC()
	var rs []Recording
	for i := range 7 {
		subject := []string{"alice", "bob"}[i%2]
		rs = append(rs, NewRecording(subject, []string{"app", "box", "app"}[i%3], t0.Add(time.Duration(i)*time.Minute), 4))
	}
	rs[3].Commands[0].Text = "DROP TABLE Customers"
	insert(t, s, "", rs...)

	check := func(name string, f clickhouse.SessionFilter, want ...int) {
		t.Helper()
		got, err := s.ListSessions(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var wantIDs []string
		for _, i := range want {
			wantIDs = append(wantIDs, rs[i].ID)
		}
		if !slices.Equal(ids(got), wantIDs) {
			t.Errorf("%s: got %v, want %v", name, ids(got), wantIDs)
		}
	}
	check("all, newest first", clickhouse.SessionFilter{}, 6, 5, 4, 3, 2, 1, 0)
	check("subject", clickhouse.SessionFilter{Subject: "bob", Issuer: "https://issuer.test"}, 5, 3, 1)
	check("target", clickhouse.SessionFilter{Target: "box"}, 4, 1)
	check("time range", clickhouse.SessionFilter{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, 3, 2)
	check("command text, any case", clickhouse.SessionFilter{Text: "drop table customers"}, 3)
	check("text with LIKE wildcards is literal", clickhouse.SessionFilter{Text: "drop_table%"})
	check("limit", clickhouse.SessionFilter{Limit: 2}, 6, 5)
	cur := &clickhouse.SessionCursor{StartedAt: rs[5].Sessions[1].StartedAt, SessionID: rs[5].ID}
	check("next page", clickhouse.SessionFilter{Limit: 2, Before: cur}, 4, 3)
	check("protocol", clickhouse.SessionFilter{Protocol: schemas.SSH})
}

func testInjection(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, _ := open(t, dial, clickhouse.Config{})
	evil := "x' OR 1=1 OR subject = '\\' --\x00\t\n}{y:String}"
	r := NewRecording(evil, "app", time.Now().UTC(), 4)
	insert(t, s, "", r, NewRecording("alice", "app", time.Now().UTC(), 4))
	got, err := s.ListSessions(ctx, clickhouse.SessionFilter{Subject: evil})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].SessionID != r.ID || got[0].Subject != evil {
		t.Fatalf("subject with quotes and escapes: got %+v, want exactly the session of that subject", got)
	}
	got, err = s.ListSessions(ctx, clickhouse.SessionFilter{Subject: "nobody' OR '1'='1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("an injected OR matched %d sessions", len(got))
	}
}

func testReadOnlySQL(t *testing.T, dial Dial) {
	ctx := context.Background()
	s, c := open(t, dial, clickhouse.Config{})
	r := NewRecording("erin", "app", time.Now().UTC(), 6)
	insert(t, s, "", r)

	res, err := clickhouse.CollectSQL(ctx, s, "SELECT session_id, count() AS n, max(ts) AS last FROM frames GROUP BY session_id;", clickhouse.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0][0] != r.ID || res.Rows[0][1] != uint64(6) {
		t.Errorf("SQL result %+v %v", res.Columns, res.Rows)
	}
	if _, ok := res.Rows[0][2].(time.Time); !ok || res.Columns[2].Type != "DateTime64(6, 'UTC')" {
		t.Errorf("max(ts) came back as %T (%s)", res.Rows[0][2], res.Columns[2].Type)
	}
	for _, q := range []string{
		"SELECT 1; DROP TABLE frames",
		"SELECT * FROM frames SETTINGS readonly = 0",
		"SELECT {x:String}",
		"",
	} {
		if _, err := clickhouse.CollectSQL(ctx, s, q, clickhouse.Limits{}); !errors.Is(err, clickhouse.ErrRejected) {
			t.Errorf("SQL(%q) = %v, want ErrRejected", q, err)
		}
	}
	for _, q := range []string{
		"DROP TABLE frames",
		"SELECT count() FROM file('/etc/hostname', 'LineAsString')",
		"SELECT 1) UNION ALL (SELECT count() FROM file('/etc/hostname', 'LineAsString')",
	} {
		if _, err := clickhouse.CollectSQL(ctx, s, q, clickhouse.Limits{}); err == nil {
			t.Errorf("SQL(%q) ran; want it refused", q)
		}
	}
	if n := Count(t, c, "SELECT count() FROM frames", nil); n != 6 {
		t.Errorf("frames has %d rows after the refused statements, want 6", n)
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT number FROM system.numbers LIMIT 100", clickhouse.Limits{MaxRows: 10}); err == nil ||
		!strings.Contains(err.Error(), "Limit for result exceeded") {
		t.Errorf("100 rows with MaxRows 10: err = %v, want the engine's result limit error", err)
	}
	// A table whose name merely contains "settings" is an ordinary query.
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT count() FROM table_settings", clickhouse.Limits{}); err != nil {
		t.Errorf("SELECT from table_settings refused: %v", err)
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT repeat('x', 1000) FROM numbers(10000)", clickhouse.Limits{MaxResultBytes: 100 << 10}); err == nil {
		t.Error("10 MB result with MaxResultBytes 100 KiB: no error")
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT length(groupArray(number)) FROM numbers(20000000)", clickhouse.Limits{MaxMemoryBytes: 16 << 20}); err == nil ||
		!strings.Contains(err.Error(), "emory limit") {
		t.Errorf("160 MB aggregate with MaxMemoryBytes 16 MiB: err = %v, want the memory limit error", err)
	}
	if _, err := clickhouse.CollectSQL(ctx, s, "SELECT number, throwIf(number = 100000) FROM system.numbers LIMIT 200000", clickhouse.Limits{MaxRows: 1000000}); err == nil {
		t.Error("throwIf did not fail the statement")
	}
	// A session that is already read-only (a profile with readonly = 2) still gets
	// the per-query limits.
	defer func() {
		if t.Failed() {
			return
		}
		if err := c.Exec(ctx, "SET readonly = 2", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := clickhouse.CollectSQL(ctx, s, "SELECT count() FROM frames", clickhouse.Limits{}); err != nil {
			t.Errorf("SQL under readonly=2: %v", err)
		}
		if _, err := clickhouse.CollectSQL(ctx, s, "SELECT number FROM system.numbers LIMIT 100", clickhouse.Limits{MaxRows: 10}); err == nil {
			t.Error("MaxRows not applied under readonly=2")
		}
	}()
	// A statement that failed halfway through its rows leaves nothing behind for the next.
	res, err = clickhouse.CollectSQL(ctx, s, "SELECT 42 AS answer", clickhouse.Limits{})
	if err != nil || len(res.Rows) != 1 || res.Rows[0][0] != uint64(42) || res.Columns[0].Name != "answer" {
		t.Errorf("statement after failed ones: %+v %v", res, err)
	}
}

func testTTL(t *testing.T, dial Dial) {
	ctx := context.Background()
	cfg := clickhouse.Config{Retention: clickhouse.Retention{FramesDays: 30, CommandsDays: 30, SessionsDays: 30, IntegrityAlertsDays: 30}}
	s, c := open(t, dial, cfg)
	old := NewRecording("frank", "app", time.Now().Add(-45*24*time.Hour).UTC(), 6)
	old.Sessions[1].Integrity = []string{"chain break at seq 3"}
	fresh := NewRecording("grace", "app", time.Now().Add(-2*24*time.Hour).UTC(), 6)
	fresh.Sessions[1].Integrity = []string{"chain break at seq 3"}
	insert(t, s, "", old, fresh)
	for _, table := range []string{"frames", "commands", "sessions", "integrity_alerts"} {
		if err := c.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL", nil); err != nil {
			t.Fatal(err)
		}
		q := fmt.Sprintf("SELECT count() FROM %s WHERE session_id = {id:String}", table)
		if n := Count(t, c, q, clickhouse.Params{"id": old.ID}); n != 0 {
			t.Errorf("%s: %d rows older than the 30-day retention survived a merge", table, n)
		}
		if n := Count(t, c, q, clickhouse.Params{"id": fresh.ID}); n == 0 {
			t.Errorf("%s: rows within the retention were deleted", table)
		}
	}
	// Migrating again with the same settings leaves the TTL alone; a new retention
	// replaces it.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := Count(t, c, "SELECT count() FROM table_settings WHERE table = 'frames'", nil); n != 1 {
		t.Errorf("table_settings has %d rows for frames after an unchanged migrate, want 1", n)
	}
	cfg.Retention.FramesDays = 1
	s2, err := clickhouse.NewStore(c, cfg) // same connection, new configuration
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	c2 := c
	if err := c2.Exec(ctx, "OPTIMIZE TABLE frames FINAL", nil); err != nil {
		t.Fatal(err)
	}
	if n := Count(t, c2, "SELECT count() FROM frames WHERE session_id = {id:String}", clickhouse.Params{"id": fresh.ID}); n != 0 {
		t.Errorf("after lowering frames retention to 1 day, %d two-day-old frames remain", n)
	}
}
