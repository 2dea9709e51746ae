// Package memstore is an in-memory query store for handler and CLI tests.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Store is an in-memory stand-in for the sink's clickhouse.Store read side (the
// query API's Store), with the same ordering and paging, for handler and CLI tests.
// The query API's integration test runs against the real store on chDB.
type Store struct {
	mu       sync.Mutex
	sessions []schemas.Session
	commands []schemas.Command
	frames   map[string][]schemas.Frame
	// PageGate, if set before use, is received from before each frame page after
	// the first, so a test can hold the store mid-session.
	PageGate chan struct{}
	sqlSeen  []string
}

const memPage = 128

// NewStore returns an empty store.
func NewStore() *Store { return &Store{frames: map[string][]schemas.Frame{}} }

// AddFrames stores frames (as the sink would, in any batches).
func (m *Store) AddFrames(fs ...schemas.Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		m.frames[f.SessionID] = append(m.frames[f.SessionID], f)
	}
}

// AddSessions stores session summaries.
func (m *Store) AddSessions(ss ...schemas.Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions = append(m.sessions, ss...)
}

// AddCommands stores commands.
func (m *Store) AddCommands(cs ...schemas.Command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands = append(m.commands, cs...)
}

// SQLSeen returns the statements SQL was called with.
func (m *Store) SQLSeen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.sqlSeen...)
}

// Summary is the session row the processors would derive from a finished b.
func Summary(b *sessiontest.Builder, status string) schemas.Session {
	st := b.Frames[0].Start
	last := b.Frames[len(b.Frames)-1]
	s := schemas.Session{
		SessionID: b.ID, Protocol: b.Protocol, Target: st.Target, GatewayID: "gw-test", Issuer: st.Issuer,
		Subject: st.Subject, Email: st.Email, Groups: st.Groups, StartedAt: b.Frames[0].TS, Status: status,
		Frames: int64(len(b.Frames)), LastSeq: last.Seq, FinalHash: last.Hash, Version: 1,
	}
	if last.End != nil {
		ended := last.TS
		s.EndedAt, s.EndReason = &ended, last.End.Reason
	}
	return s
}

func (m *Store) ListSessions(_ context.Context, f clickhouse.SessionFilter) ([]schemas.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []schemas.Session
	for _, s := range m.sessions {
		if match(&s, &f, m.commands) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b schemas.Session) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(b.SessionID, a.SessionID)
	})
	return out[:min(len(out), f.Limit)], nil
}

func match(s *schemas.Session, f *clickhouse.SessionFilter, cmds []schemas.Command) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if !eq(f.Issuer, s.Issuer) || !eq(f.Subject, s.Subject) || !eq(f.Target, s.Target) ||
		!eq(string(f.Protocol), string(s.Protocol)) || !eq(f.Status, s.Status) {
		return false
	}
	if (!f.From.IsZero() && s.StartedAt.Before(f.From)) || (!f.To.IsZero() && !s.StartedAt.Before(f.To)) {
		return false
	}
	if b := f.Before; b != nil {
		c := s.StartedAt.Compare(b.StartedAt)
		if c > 0 || (c == 0 && s.SessionID >= b.SessionID) {
			return false
		}
	}
	if f.Text == "" {
		return true
	}
	return slices.ContainsFunc(cmds, func(c schemas.Command) bool {
		return c.SessionID == s.SessionID && strings.Contains(strings.ToLower(c.Text), strings.ToLower(f.Text))
	})
}

func (m *Store) GetSession(_ context.Context, id string) (schemas.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		if s.SessionID == id {
			return s, nil
		}
	}
	return schemas.Session{}, fmt.Errorf("session %s: %w", id, clickhouse.ErrNotFound)
}

func (m *Store) Commands(_ context.Context, f clickhouse.CommandFilter) ([]schemas.Command, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []schemas.Command
	for _, c := range m.commands {
		if c.SessionID == f.SessionID && c.CommandSeq >= f.FromSeq && len(out) < f.Limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *Store) Frames(ctx context.Context, id string, from, to int64, fn func(*schemas.Frame) error) error {
	for first := true; ; first = false {
		if !first && m.PageGate != nil {
			select {
			case <-m.PageGate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		m.mu.Lock()
		var page []schemas.Frame
		for _, f := range m.frames[id] {
			if f.Seq >= from && f.Seq <= to && len(page) < memPage {
				page = append(page, f)
			}
		}
		m.mu.Unlock()
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < memPage {
			return nil
		}
		from = page[len(page)-1].Seq + 1
	}
}

// SQL answers every statement with one row: the row limit it was given.
func (m *Store) SQL(_ context.Context, q string, l clickhouse.Limits) (clickhouse.Rows, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sqlSeen = append(m.sqlSeen, q)
	return &MemRows{Cols: []clickhouse.Column{{Name: "n", Type: "UInt64"}}, Rows: [][]any{{uint64(l.MaxRows)}}}, nil
}

// MemRows is a clickhouse.Rows over rows in memory; Fail, if set, is returned by Err
// after the rows, as a statement that fails halfway through its result.
type MemRows struct {
	Cols []clickhouse.Column
	Rows [][]any
	Fail error
	i    int
}

func (r *MemRows) Columns() []clickhouse.Column { return r.Cols }
func (r *MemRows) Next() bool                   { r.i++; return r.i <= len(r.Rows) }
func (r *MemRows) Values() ([]any, error)       { return r.Rows[r.i-1], nil }
func (r *MemRows) Err() error                   { return r.Fail }
func (r *MemRows) Close() error                 { return nil }
func (r *MemRows) Scan(...any) error            { return fmt.Errorf("MemRows: Scan is not supported; use Values") }
