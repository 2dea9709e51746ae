package clickhouse_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// BenchmarkSinkServer compares rows/s through the sink (Kafka → Writer → ClickHouse
// server over clickhouse-go) with a bare Store.Insert of the same rows in batches of
// the same size, on the Debian server (reduced schema). Run once:
// go test -run '^$' -bench SinkServer -benchtime 1x ./sinks/clickhouse/
func BenchmarkSinkServer(b *testing.B) {
	brokers := testenv.Kafka(b)
	addr := testenv.ClickHouse(b).Addr
	rs := storetest.BenchWorkload(200, 1000, 512)
	const batch = 10000
	open := func(b *testing.B) clickhouse.Store {
		ctx := context.Background()
		sc := clickhouse.ServerConfig{Addr: []string{addr}, Database: fmt.Sprintf("tapline_bench_%d", rand.Uint64())}
		conn, err := clickhouse.DialServer(ctx, sc)
		if err != nil {
			b.Fatal(err)
		}
		s, err := clickhouse.NewStore(conn, clickhouse.Config{Schema: clickhouse.SchemaLegacy})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+sc.Database, nil) //nolint:errcheck // best effort
			s.Close()
		})
		return s
	}
	b.Run("BareInsert", func(b *testing.B) { storetest.BenchBareInsert(b, open(b), rs, batch) })
	b.Run("Sink", func(b *testing.B) { storetest.BenchSink(b, brokers, open(b), rs, batch) })
}

// BenchmarkFramesReadServer reads one long session back (Store.Frames) from the
// ClickHouse server. go test -run '^$' -bench FramesRead -benchtime 1x ./sinks/clickhouse/
func BenchmarkFramesReadServer(b *testing.B) {
	ctx := context.Background()
	sc := clickhouse.ServerConfig{Addr: []string{testenv.ClickHouse(b).Addr}, Database: fmt.Sprintf("tapline_bench_%d", rand.Uint64())}
	conn, err := clickhouse.DialServer(ctx, sc)
	if err != nil {
		b.Fatal(err)
	}
	s, err := clickhouse.NewStore(conn, clickhouse.Config{Schema: clickhouse.SchemaLegacy})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+sc.Database, nil) //nolint:errcheck // best effort
		s.Close()
	}()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	storetest.BenchFramesRead(b, s, 50000, 64)
}
