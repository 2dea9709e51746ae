package clickhouse

import (
	"context"
	"errors"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Store is tapline's recording store: the sink writes batches into it and the query
// API reads sessions, commands and frames back. Two implementations share the same
// migrations and SQL: a ClickHouse server or cluster (OpenServer) and embedded chDB
// (package sinks/clickhouse/chdb). Implementations are safe for concurrent use.
type Store interface {
	// Migrate applies the embedded migrations that are not recorded in
	// schema_migrations yet, then the retention and storage settings of the store's
	// Config. Safe to run on every start and from several processes.
	Migrate(ctx context.Context) error
	// CheckSchema reports whether every embedded migration is applied, without
	// changing anything: the query role reads with a login that may not write, and
	// leaves migrations to the sink.
	CheckSchema(ctx context.Context) error

	// Insert writes a batch. A batch retried with the same Token is dropped by
	// ClickHouse's insert deduplication; rows written twice under different tokens
	// collapse on the tables' ReplacingMergeTree keys (read with FINAL).
	Insert(ctx context.Context, b *Batch) error

	// ListSessions returns the latest summary of the sessions matching f, newest first.
	ListSessions(ctx context.Context, f SessionFilter) ([]schemas.Session, error)
	// GetSession returns the latest summary of one session, or ErrNotFound.
	GetSession(ctx context.Context, sessionID string) (schemas.Session, error)
	// Commands returns a session's commands in command_seq order, one page.
	Commands(ctx context.Context, f CommandFilter) ([]schemas.Command, error)
	// Frames calls fn for each frame of the session with from <= seq <= to, in seq
	// order, reading a page at a time so memory stays bounded. A non-nil error from fn
	// stops the walk and is returned.
	Frames(ctx context.Context, sessionID string, from, to int64, fn func(*schemas.Frame) error) error
	// SQL runs one read-only statement with the given limits and streams its rows;
	// the caller closes them. CollectSQL reads them all.
	SQL(ctx context.Context, query string, l Limits) (Rows, error)

	Close() error
}

// ErrNotFound is returned by GetSession for an unknown session.
var ErrNotFound = errors.New("not found")

// ErrRejected is returned by SQL for statements it refuses to run.
var ErrRejected = errors.New("statement rejected")

// Batch is what the sink writes at once. Integrity alerts are derived from the
// sessions' Integrity lists.
type Batch struct {
	Frames   []schemas.Frame
	Commands []schemas.Command
	Sessions []schemas.Session
	// Token identifies the batch's source records (topics, partitions and offset
	// ranges); each table's insert carries "<Token>/<table>" as its
	// insert_deduplication_token. Empty means no token.
	Token string
}

// Len is the number of source rows in the batch.
func (b *Batch) Len() int { return len(b.Frames) + len(b.Commands) + len(b.Sessions) }

// SessionFilter selects sessions. Zero fields do not filter.
type SessionFilter struct {
	Issuer, Subject string // exact identity match (callers outside the auditors group)
	Target          string
	Protocol        schemas.Protocol
	Status          string
	From, To        time.Time // started_at in [From, To)
	Text            string    // case-insensitive substring of one of the session's commands
	// Before continues a listing: only sessions that sort strictly after this one in
	// the (started_at DESC, session_id DESC) order, i.e. the last row of the previous page.
	Before *SessionCursor
	Limit  int // default 100, at most 1000
}

// SessionCursor is a position in a session listing.
type SessionCursor struct {
	StartedAt time.Time
	SessionID string
}

// CommandFilter selects one page of a session's commands.
type CommandFilter struct {
	SessionID string
	FromSeq   int64 // only command_seq >= FromSeq; the next page starts after the last row's CommandSeq
	Text      string
	Limit     int // default 1000, at most 10000
}

// Limits bound a read-only SQL statement.
type Limits struct {
	MaxRows          int           // max_result_rows; default 10000
	MaxExecutionTime time.Duration // max_execution_time; default 30s
	MaxResultBytes   int64         // max_result_bytes; default 256 MiB
	MaxMemoryBytes   int64         // max_memory_usage; default 2 GiB
}

// Defaults for zero Limits fields.
const (
	DefaultSQLMaxRows          = 10000
	DefaultSQLMaxExecutionTime = 30 * time.Second
	DefaultSQLMaxResultBytes   = 256 << 20
	DefaultSQLMaxMemoryBytes   = 2 << 30
)

func (l Limits) withDefaults() Limits {
	if l.MaxRows <= 0 {
		l.MaxRows = DefaultSQLMaxRows
	}
	if l.MaxExecutionTime <= 0 {
		l.MaxExecutionTime = DefaultSQLMaxExecutionTime
	}
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = DefaultSQLMaxResultBytes
	}
	if l.MaxMemoryBytes <= 0 {
		l.MaxMemoryBytes = DefaultSQLMaxMemoryBytes
	}
	return l
}

// Column names a result column and its ClickHouse type.
type Column struct {
	Name string
	Type string
}

// Result is the outcome of a read-only SQL statement. Values are Go values:
// string, int64, uint64, float64, bool, time.Time, []any, map[string]any or nil.
type Result struct {
	Columns []Column
	Rows    [][]any
}
