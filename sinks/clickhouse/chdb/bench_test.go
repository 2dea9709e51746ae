//go:build chdb

package chdb

import (
	"context"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// BenchmarkSinkCHDB compares rows/s through the sink (Kafka → Writer → chDB) with a
// bare Store.Insert of the same rows in batches of the same size. Run once:
// go test -tags chdb -run '^$' -bench . -benchtime 1x ./sinks/clickhouse/chdb/
func BenchmarkSinkCHDB(b *testing.B) {
	brokers := testenv.Kafka(b)
	rs := storetest.BenchWorkload(200, 1000, 512)
	const batch = 10000
	open := func(b *testing.B) clickhouse.Store {
		s, err := Open(b.TempDir(), clickhouse.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Migrate(context.Background()); err != nil {
			b.Fatal(err)
		}
		return s
	}
	b.Run("BareInsert", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		storetest.BenchBareInsert(b, s, rs, batch)
	})
	b.Run("Sink", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		storetest.BenchSink(b, brokers, s, rs, batch)
	})
}

// BenchmarkFramesRead reads one long session back (Store.Frames).
// go test -tags chdb -run '^$' -bench FramesRead -benchtime 1x ./sinks/clickhouse/chdb/
func BenchmarkFramesRead(b *testing.B) {
	s, err := Open(b.TempDir(), clickhouse.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	storetest.BenchFramesRead(b, s, 50000, 64)
}
