package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// Fakes for unit tests that need no services. The same paths run against real
// Postgres, Kafka and clients in the integration tests.

type fakeVerifier map[string]auth.Identity

func (f fakeVerifier) Verify(_ context.Context, raw string) (auth.Identity, error) {
	switch raw {
	case "expired":
		return auth.Identity{}, fmt.Errorf("%w at 2026-01-01T00:00:00Z", auth.ErrExpired)
	}
	id, ok := f[raw]
	if !ok {
		return auth.Identity{}, fmt.Errorf("%w: malformed token (not a JWT)", auth.ErrInvalidToken)
	}
	return id, nil
}

type recFrame struct {
	dir     schemas.Direction
	kind    string
	payload []byte
}

type fakeRecorder struct {
	mu       sync.Mutex
	sessions []*fakeSession
	denials  []string
	startErr error
	// clientHook, if set, runs for each message inside Client and ClientBatch
	// before they record anything; an error fails the call.
	clientHook func(kind string, payload []byte) error
}

func (r *fakeRecorder) Start(_ context.Context, start schemas.SessionStart) (Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startErr != nil {
		return nil, r.startErr
	}
	s := &fakeSession{r: r, id: fmt.Sprintf("s%d", len(r.sessions)), start: start, failed: make(chan struct{}), ended: make(chan struct{})}
	r.sessions = append(r.sessions, s)
	return s, nil
}

func (r *fakeRecorder) Deny(_ context.Context, start schemas.SessionStart, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.denials = append(r.denials, start.Target+": "+reason)
	return nil
}

func (r *fakeRecorder) denialCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.denials)
}

func (r *fakeRecorder) session(t *testing.T, i int) *fakeSession {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) <= i {
		t.Fatalf("%d sessions recorded, want session %d", len(r.sessions), i)
	}
	return r.sessions[i]
}

type fakeSession struct {
	r       *fakeRecorder
	id      string
	start   schemas.SessionStart
	mu      sync.Mutex
	frames  []recFrame
	batches []int
	reason  string
	failed  chan struct{}
	failErr error
	ended   chan struct{}
}

func (s *fakeSession) ID() string { return s.id }

func (s *fakeSession) Client(ctx context.Context, kind string, channel int64, payload []byte) error {
	return s.ClientBatch(ctx, []recorder.Message{{Kind: kind, Channel: channel, Payload: payload}})
}

func (s *fakeSession) ClientBatch(_ context.Context, msgs []recorder.Message) error {
	if hook := s.r.clientHook; hook != nil {
		for _, m := range msgs {
			if err := hook(m.Kind, m.Payload); err != nil {
				return err
			}
		}
	}
	for _, m := range msgs {
		s.add(schemas.Client, m.Kind, m.Payload)
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(msgs))
	s.mu.Unlock()
	return nil
}

// batchSizes returns the number of messages of each Client/ClientBatch call.
func (s *fakeSession) batchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

func (s *fakeSession) Server(kind string, _ int64, payload []byte) error {
	s.add(schemas.Server, kind, payload)
	return nil
}

func (s *fakeSession) add(dir schemas.Direction, kind string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, recFrame{dir, kind, append([]byte(nil), payload...)})
}

func (s *fakeSession) End(_ context.Context, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reason = reason
	close(s.ended)
	return nil
}

func (s *fakeSession) Failed() <-chan struct{} { return s.failed }
func (s *fakeSession) Err() error              { return s.failErr }

func (s *fakeSession) waitEnd(t *testing.T) string {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("session did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *fakeSession) kinds(dir schemas.Direction) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, f := range s.frames {
		if f.dir == dir {
			out = append(out, f.kind)
		}
	}
	return out
}

// fakeBackend is a minimal Postgres server: cleartext password "gwpass", answers
// every Query with one row holding the query text, and records what it got.
type fakeBackend struct {
	ln       net.Listener
	mu       sync.Mutex
	queries  []string
	startups []map[string]string
	cancels  []cancelKey
}

const fakePID, fakeSecret = 4242, 987654

// fakeTerminateQuery makes the fake backend end the connection with a FATAL.
const fakeTerminateQuery = "select pg_terminate_backend(pg_backend_pid())"

func newFakeBackend(t *testing.T) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *fakeBackend) addr() string { return b.ln.Addr().String() }

func (b *fakeBackend) gotQueries() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.queries...)
}

func (b *fakeBackend) serve(c net.Conn) {
	defer c.Close()
	be := pgproto3.NewBackend(pgproto3.NewChunkReader(c), c)
	first, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	switch m := first.(type) {
	case *pgproto3.CancelRequest:
		b.mu.Lock()
		b.cancels = append(b.cancels, cancelKey{m.ProcessID, m.SecretKey})
		b.mu.Unlock()
		return
	case *pgproto3.StartupMessage:
		b.mu.Lock()
		b.startups = append(b.startups, m.Parameters)
		b.mu.Unlock()
	default:
		return
	}
	_ = be.Send(&pgproto3.AuthenticationCleartextPassword{})
	_ = be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
	pm, err := be.Receive()
	if err != nil {
		return
	}
	if pw, ok := pm.(*pgproto3.PasswordMessage); !ok || pw.Password != "gwpass" {
		_ = be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
		return
	}
	for _, m := range []pgproto3.BackendMessage{
		&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0 (fake)"},
		&pgproto3.BackendKeyData{ProcessID: fakePID, SecretKey: fakeSecret},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	} {
		_ = be.Send(m)
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			if m.String == fakeTerminateQuery {
				// As PostgreSQL does when pg_terminate_backend hits this backend.
				_ = be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
					Message: "terminating connection due to administrator command"})
				return
			}
			b.mu.Lock()
			b.queries = append(b.queries, m.String)
			b.mu.Unlock()
			for _, r := range []pgproto3.BackendMessage{
				&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("q"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
				&pgproto3.DataRow{Values: [][]byte{[]byte(m.String)}},
				&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
				&pgproto3.ReadyForQuery{TxStatus: 'I'},
			} {
				_ = be.Send(r)
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

// harness runs a proxy with fakes in front of a fakeBackend.
type harness struct {
	srv  *Server
	rec  *fakeRecorder
	be   *fakeBackend
	addr string
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	be := newFakeBackend(t)
	rec := &fakeRecorder{}
	cfg := Config{
		AllowPlaintext:  true,
		MaxMessageBytes: 64 << 10,
		Targets: []Target{{
			Name: "app", Address: be.addr(), Groups: []string{"dba"}, Database: "appdb", User: "gw",
			Password: func() (string, error) { return "gwpass", nil }, TLS: TLSDisable, AllowCleartext: true,
		}},
		Verifier: fakeVerifier{
			"good":  {Issuer: "https://idp", Subject: "alice", Groups: []string{"dba"}, TokenID: "t1"},
			"other": {Issuer: "https://idp", Subject: "bob", Groups: []string{"web"}},
		},
		Recorder: rec,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{srv: srv, rec: rec, be: be, addr: ln.Addr().String()}
}

// client is a raw protocol client for the unit tests.
type client struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: conn, fe: pgproto3.NewFrontend(pgproto3.NewChunkReader(conn), conn)}
}

func (c *client) send(m pgproto3.FrontendMessage) {
	c.t.Helper()
	if err := c.fe.Send(m); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() pgproto3.BackendMessage {
	c.t.Helper()
	m, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	return m
}

// login sends a StartupMessage for database and the token; it returns the first
// message after the password (AuthenticationOk or an ErrorResponse).
func (c *client) login(database, token string) pgproto3.BackendMessage {
	c.t.Helper()
	c.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "agent", "database": database, "application_name": "unit"}})
	m := c.recv()
	if _, ok := m.(*pgproto3.AuthenticationCleartextPassword); !ok {
		return m
	}
	c.send(&pgproto3.PasswordMessage{Password: token})
	return c.recv()
}

// untilReady reads to ReadyForQuery and returns what came before it.
func (c *client) untilReady() []pgproto3.BackendMessage {
	c.t.Helper()
	var out []pgproto3.BackendMessage
	for {
		m := c.recv()
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return out
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
			c.t.Fatalf("FATAL before ReadyForQuery: %s %s", e.Code, e.Message)
		}
		out = append(out, m)
	}
}

// fatalError reads until a FATAL ErrorResponse and returns it.
func (c *client) fatalError() *pgproto3.ErrorResponse {
	c.t.Helper()
	for {
		m, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("connection ended without an ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
}

var errKafkaDown = errors.New("recording unavailable: kafka unreachable")
