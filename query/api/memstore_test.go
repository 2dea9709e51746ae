package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// memStore is an in-memory Store with the sink's ordering and paging semantics, for
// handler tests; the integration test runs the same API over chDB.
type memStore struct {
	mu       sync.Mutex
	sessions []schemas.Session
	commands []schemas.Command
	frames   map[string][]schemas.Frame
	// pageGate, if set, is received from before each frame page after the first.
	pageGate chan struct{}
	pages    int
	sqlSeen  []string
}

const memPage = 128

func newMemStore() *memStore { return &memStore{frames: map[string][]schemas.Frame{}} }

func (m *memStore) addFrames(fs ...schemas.Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		m.frames[f.SessionID] = append(m.frames[f.SessionID], f)
	}
}

func (m *memStore) ListSessions(_ context.Context, f clickhouse.SessionFilter) ([]schemas.Session, error) {
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

func (m *memStore) GetSession(_ context.Context, id string) (schemas.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		if s.SessionID == id {
			return s, nil
		}
	}
	return schemas.Session{}, fmt.Errorf("session %s: %w", id, clickhouse.ErrNotFound)
}

func (m *memStore) Commands(_ context.Context, f clickhouse.CommandFilter) ([]schemas.Command, error) {
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

func (m *memStore) Frames(ctx context.Context, id string, from, to int64, fn func(*schemas.Frame) error) error {
	for first := true; ; first = false {
		if !first && m.pageGate != nil {
			select {
			case <-m.pageGate:
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
		m.pages++
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

func (m *memStore) SQL(_ context.Context, q string, l clickhouse.Limits) (*clickhouse.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sqlSeen = append(m.sqlSeen, q)
	return &clickhouse.Result{Columns: []clickhouse.Column{{Name: "n", Type: "UInt64"}}, Rows: [][]any{{uint64(l.MaxRows)}}}, nil
}
