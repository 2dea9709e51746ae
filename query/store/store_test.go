package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/query/store"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// The query role reads as tapline_reader, the read-only login deploy/clickhouse
// ships: it opens a store the sink migrated and reads sessions, and on a store
// nobody migrated it stops with what to do, leaving the database untouched.
func TestReaderLoginOpensAndNeverMigrates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := testenv.ClickHouse(t).Addr
	db := fmt.Sprintf("tapline_test_%d", rand.Uint64())
	cfg := clickhouse.Config{Schema: clickhouse.SchemaLegacy} // the test server predates the full schema
	admin := clickhouse.Location{ServerConfig: clickhouse.ServerConfig{Addr: []string{addr}, Database: db}, Config: cfg}
	reader := admin
	reader.Username = "tapline_reader"

	// Before the sink ran: refused, and nothing created.
	if _, err := store.Open(ctx, reader); err == nil || !errors.Is(err, clickhouse.ErrSchemaBehind) || !strings.Contains(err.Error(), "tapline sink") {
		t.Fatalf("open before any migration: %v, want ErrSchemaBehind naming tapline sink", err)
	}
	sink, err := clickhouse.Open(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	t.Cleanup(func() {
		conn, err := clickhouse.DialServer(context.Background(), admin.ServerConfig)
		if err == nil {
			conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db, nil)
			conn.Close()
		}
	})
	if err := sink.CheckSchema(ctx); err == nil {
		t.Fatal("the reader's open migrated the store")
	}

	// The sink migrates and writes; the reader reads.
	if err := sink.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rec := storetest.NewRecording("alice", "app", time.Now().UTC().Truncate(time.Second), 4)
	if err := sink.Insert(ctx, &clickhouse.Batch{Frames: rec.Frames, Commands: rec.Commands, Sessions: rec.Sessions}); err != nil {
		t.Fatal(err)
	}
	r, err := store.Open(ctx, reader)
	if err != nil && strings.Contains(err.Error(), "tapline_reader") && !errors.Is(err, clickhouse.ErrSchemaBehind) {
		t.Skipf("the running test services predate the tapline_reader login (restart them): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The legacy schema serves auditors' SQL; session search needs the full one.
	rows, err := r.SQL(ctx, "SELECT count() FROM frames", clickhouse.Limits{})
	if err != nil {
		t.Fatalf("reader SQL: %v", err)
	}
	defer rows.Close()
	var n uint64
	if !rows.Next() || rows.Scan(&n) != nil || n != uint64(len(rec.Frames)) {
		t.Fatalf("reader counts %d frames, want the %d the sink wrote (%v)", n, len(rec.Frames), rows.Err())
	}
}
