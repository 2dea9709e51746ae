package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// Access is one api_access record: who read what, and what they got.
type Access struct {
	Time      time.Time `json:"ts"`
	Event     string    `json:"event"` // always "api_access"
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Auditor   bool      `json:"auditor"`
	Method    string    `json:"method"`
	Route     string    `json:"route"`
	Path      string    `json:"path"`
	Query     string    `json:"query,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	// Via is "console" for a request of the web console (session cookie), empty
	// for a bearer token.
	Via string `json:"via,omitempty"`
	// Denied: the session exists but belongs to someone else (answered as not found).
	Denied     bool    `json:"denied,omitempty"`
	SQL        string  `json:"sql,omitempty"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	DurationMS float64 `json:"duration_ms"`
	Remote     string  `json:"remote"`
}

// AccessLog durably records api_access records.
type AccessLog interface {
	Record(Access) error
}

// FileAccessLog appends api_access records as JSON lines to a file, synced to disk
// after each record so the trail survives a crash of the query process.
type FileAccessLog struct {
	mu sync.Mutex
	f  *os.File
}

// OpenFileAccessLog opens (creating, mode 0600) the file for appending.
func OpenFileAccessLog(path string) (*FileAccessLog, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return &FileAccessLog{f: f}, nil
}

// Record appends one record.
func (l *FileAccessLog) Record(a Access) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return l.f.Sync()
}

// Close closes the file.
func (l *FileAccessLog) Close() error { return l.f.Close() }

// accessRecord collects what handlers learn about a request for its access record.
type accessRecord struct {
	start     time.Time
	route     string
	caller    *caller
	sessionID string
	denied    bool
	sql       string
}

type recordKey struct{}

func withRecord(ctx context.Context, rec *accessRecord) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

// recordOf returns the request's access record (a throwaway one outside route).
func recordOf(ctx context.Context) *accessRecord {
	if rec, ok := ctx.Value(recordKey{}).(*accessRecord); ok {
		return rec
	}
	return &accessRecord{}
}

// accessStarted, with AccessLogRequired, writes the request's api_access_start
// record before anything is served, and refuses the request (503) when it cannot:
// no view without a trail. Otherwise it does nothing.
func (s *server) accessStarted(w http.ResponseWriter, r *http.Request, rec *accessRecord) bool {
	if !s.cfg.AccessLogRequired {
		return true
	}
	a := Access{Time: rec.start.UTC(), Event: "api_access_start", Method: r.Method, Route: rec.route, Path: r.URL.Path,
		Query: r.URL.RawQuery, Remote: r.RemoteAddr}
	if c := rec.caller; c != nil {
		a.Subject, a.Issuer, a.Auditor, a.Via = c.Subject, c.Issuer, c.auditor, c.via
	}
	var err error
	if s.cfg.AccessLog == nil {
		err = errors.New("no access log configured")
	} else {
		err = s.cfg.AccessLog.Record(a)
	}
	if err == nil {
		return true
	}
	s.cfg.Logger.Error("access log write failed: request refused (access_log_required)", "err", err, "path", a.Path, "subject", a.Subject)
	writeError(w, http.StatusServiceUnavailable, "access_log_unavailable",
		"the access trail cannot be written, and this server requires it before serving recordings; the operator must fix the access log")
	return false
}

func (s *server) logAccess(r *http.Request, w *loggingWriter, rec *accessRecord) {
	a := Access{
		Time: rec.start.UTC(), Event: "api_access", Method: r.Method, Route: rec.route, Path: r.URL.Path,
		Query: r.URL.RawQuery, SessionID: rec.sessionID, Denied: rec.denied, SQL: rec.sql,
		Status: w.status(), Bytes: w.bytes, Remote: r.RemoteAddr,
		DurationMS: float64(time.Since(rec.start).Microseconds()) / 1000,
	}
	if c := rec.caller; c != nil {
		a.Subject, a.Issuer, a.Auditor, a.Via = c.Subject, c.Issuer, c.auditor, c.via
	}
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "api_access",
		slog.String("subject", a.Subject), slog.String("issuer", a.Issuer), slog.Bool("auditor", a.Auditor),
		slog.String("method", a.Method), slog.String("route", a.Route), slog.String("path", a.Path),
		slog.String("query", a.Query), slog.String("session_id", a.SessionID), slog.String("via", a.Via), slog.Bool("denied", a.Denied),
		slog.String("sql", a.SQL), slog.Int("status", a.Status), slog.Int64("bytes", a.Bytes),
		slog.Float64("duration_ms", a.DurationMS), slog.String("remote", a.Remote))
	if s.cfg.AccessLog == nil {
		return
	}
	if err := s.cfg.AccessLog.Record(a); err != nil {
		s.cfg.Logger.Error("access log write failed", "err", err, "path", a.Path, "subject", a.Subject)
	}
}

// loggingWriter remembers the status and size of a response and passes Flush on,
// so streamed responses still stream.
type loggingWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *loggingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *loggingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *loggingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
