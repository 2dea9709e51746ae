// Package store is the query role's view of the recording store: read methods
// only. The sink owns the schema (it migrates); the query role opens the store
// with a login that should not be able to write (tapline_reader, docs/security.md)
// and only checks that the schema is there.
package store

import (
	"context"
	"fmt"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Reader reads recordings. It has no Migrate and no Insert: code holding a
// Reader cannot change the store.
type Reader interface {
	ListSessions(ctx context.Context, f clickhouse.SessionFilter) ([]schemas.Session, error)
	GetSession(ctx context.Context, sessionID string) (schemas.Session, error)
	Commands(ctx context.Context, f clickhouse.CommandFilter) ([]schemas.Command, error)
	Frames(ctx context.Context, sessionID string, from, to int64, fn func(*schemas.Frame) error) error
	SQL(ctx context.Context, query string, l clickhouse.Limits) (clickhouse.Rows, error)
	Close() error
}

// Open opens the store at loc for reading and checks that every migration is
// applied, without applying any.
func Open(ctx context.Context, loc clickhouse.Location) (Reader, error) {
	s, err := clickhouse.Open(ctx, loc)
	if err != nil {
		return nil, err
	}
	if err := s.CheckSchema(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("query: %w", err)
	}
	return s, nil
}
