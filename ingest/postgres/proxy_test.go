package postgres

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
)

func TestRelayRecordsBothDirections(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	if m := c.login("app", "good"); !isAuthOK(m) {
		t.Fatalf("login: %#v", m)
	}
	before := c.untilReady()
	var key *pgproto3.BackendKeyData
	for _, m := range before {
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			key = k
		}
	}
	// The backend's real pid (drivers pass it to pg_terminate_backend), the gateway's secret.
	if key == nil || key.ProcessID != fakePID || key.SecretKey == fakeSecret {
		t.Fatalf("agent got BackendKeyData %+v, want pid %d and a secret other than the target's", key, fakePID)
	}
	c.send(&pgproto3.Query{String: "select 'hello'"})
	rows := c.untilReady()
	if len(rows) != 3 || string(rows[1].(*pgproto3.DataRow).Values[0]) != "select 'hello'" {
		t.Fatalf("query result %#v", rows)
	}
	c.send(&pgproto3.Terminate{})

	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); reason != "client terminated" {
		t.Fatalf("end reason %q", reason)
	}
	if got, want := s.kinds(schemas.Client), []string{"StartupMessage", "Query", "Terminate"}; !slices.Equal(got, want) {
		t.Fatalf("client frames %v, want %v", got, want)
	}
	want := []string{"AuthenticationOk", "ParameterStatus", "BackendKeyData", "ReadyForQuery",
		"RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"}
	if got := s.kinds(schemas.Server); !slices.Equal(got, want) {
		t.Fatalf("server frames %v, want %v", got, want)
	}
	if s.start.Subject != "alice" || s.start.Target != "app" || s.start.Params["application_name"] != "unit" || s.start.TargetAddr != h.be.addr() {
		t.Fatalf("session start %+v", s.start)
	}
	// The target saw the gateway's user and database, and the agent's other parameters.
	st := h.be.startups[0]
	if st["user"] != "gw" || st["database"] != "appdb" || st["application_name"] != "unit" {
		t.Fatalf("target startup parameters %v", st)
	}
}

func isAuthOK(m pgproto3.BackendMessage) bool {
	_, ok := m.(*pgproto3.AuthenticationOk)
	return ok
}

// In strict mode a client message reaches the target only after Client returned.
func TestClientMessageForwardedOnlyAfterRecorded(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h.rec.clientHook = func(kind string, _ []byte) error {
		if kind == "Query" {
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	c.send(&pgproto3.Query{String: "select 42"})
	<-entered
	time.Sleep(100 * time.Millisecond)
	if q := h.be.gotQueries(); len(q) != 0 {
		t.Fatalf("target got %v before the frame was recorded", q)
	}
	close(release)
	c.untilReady()
	if q := h.be.gotQueries(); !slices.Equal(q, []string{"select 42"}) {
		t.Fatalf("target got %v", q)
	}
}

func TestRecordingFailureStopsTheStatement(t *testing.T) {
	h := newHarness(t, nil)
	h.rec.clientHook = func(kind string, _ []byte) error {
		if kind == "Query" {
			return errKafkaDown
		}
		return nil
	}
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	c.send(&pgproto3.Query{String: "insert into audit values (1)"})
	e := c.fatalError()
	if e.Code != codeConnectionFailure || !strings.Contains(e.Message, "recording unavailable") {
		t.Fatalf("error %s %q", e.Code, e.Message)
	}
	s := h.rec.session(t, 0)
	if reason := s.waitEnd(t); !strings.HasPrefix(reason, "recording failed") {
		t.Fatalf("end reason %q", reason)
	}
	if q := h.be.gotQueries(); len(q) != 0 {
		t.Fatalf("target got %v although recording failed", q)
	}
}

func TestNewSessionRefusedWhenRecorderUnavailable(t *testing.T) {
	h := newHarness(t, nil)
	h.rec.startErr = errKafkaDown
	c := h.dial(t)
	m := c.login("app", "good")
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != codeRejected || !strings.Contains(e.Message, "recording unavailable (Kafka)") {
		t.Fatalf("got %#v", m)
	}
	if len(h.be.startups) != 0 {
		t.Fatal("the gateway logged in to the target without a recorded session")
	}
}

func TestDenials(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, db, token, code, msg string
	}{
		{"garbage token", "app", "garbage", codeInvalidPassword, "invalid token"},
		{"expired token", "app", "expired", codeInvalidPassword, "token expired"},
		{"wrong group", "app", "other", codeInvalidAuthSpec, "requires membership in one of [dba]"},
		{"unknown target", "nope", "good", codeInvalidAuthSpec, `unknown target "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			m := c.login(tc.db, tc.token)
			e, ok := m.(*pgproto3.ErrorResponse)
			if !ok || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("got %#v, want %s %q", m, tc.code, tc.msg)
			}
		})
	}
	// Denials are recorded in the background, after the agent was answered.
	waitFor(t, "four recorded denials", func() bool { return h.rec.denialCount() >= 4 })
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if len(h.rec.denials) != 4 || len(h.rec.sessions) != 0 {
		t.Fatalf("denials %v, sessions %d", h.rec.denials, len(h.rec.sessions))
	}
}

func TestTLSRequiredWithoutPlaintextListener(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AllowPlaintext = false })
	c := h.dial(t)
	m := c.login("app", "good")
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != codeInvalidAuthSpec || !strings.Contains(e.Message, "TLS required") || !strings.Contains(e.Message, "sslmode=verify-full") {
		t.Fatalf("got %#v", m)
	}
	// SSLRequest without a certificate: 'N'.
	c = h.dial(t)
	if _, err := c.conn.Write(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, codeSSLRequest)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := c.conn.Read(b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("SSLRequest answer %q, %v", b[0], err)
	}
}

func TestHostileClientAfterLogin(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name       string
		raw        []byte
		code, want string
	}{
		{"oversized", binary.BigEndian.AppendUint32([]byte{'Q'}, 1<<30), codeProgramLimit, "exceeds the limit"},
		{"negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xfe}, codeProtocolViolation, "invalid length"},
		{"unknown type", msg('@', "boom"), codeProtocolViolation, "unexpected message type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			c.login("app", "good")
			c.untilReady()
			if _, err := c.conn.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			e := c.fatalError()
			if e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %s %q, want %s mentioning %q", e.Code, e.Message, tc.code, tc.want)
			}
		})
	}
	wantReasons := []string{"client message too large", "protocol violation", "protocol violation"}
	for i, want := range wantReasons {
		if r := h.rec.session(t, i).waitEnd(t); !strings.Contains(r, want) {
			t.Errorf("session %d ended with %q, want %q", i, r, want)
		}
	}
	if q := h.be.gotQueries(); len(q) != 0 {
		t.Fatalf("target got %v", q)
	}
}

func TestHostileStartup(t *testing.T) {
	h := newHarness(t, nil)
	for name, raw := range map[string][]byte{
		"huge startup length":  {0x7f, 0, 0, 0, 0, 3, 0, 0},
		"unterminated params":  append(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 12}, protocol30), "user"...),
		"bad protocol version": binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, 2<<16),
	} {
		t.Run(name, func(t *testing.T) {
			c := h.dial(t)
			if _, err := c.conn.Write(raw); err != nil {
				t.Fatal(err)
			}
			e := c.fatalError()
			if e.Code != codeProtocolViolation && e.Code != codeFeatureNotSupported {
				t.Fatalf("got %s %q", e.Code, e.Message)
			}
		})
	}
}

func TestCancelForwardedWithTheTargetsKey(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.login("app", "good")
	var key *pgproto3.BackendKeyData
	for _, m := range c.untilReady() {
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			key = k
		}
	}
	cancel := h.dial(t)
	cancel.send(&pgproto3.CancelRequest{ProcessID: key.ProcessID, SecretKey: key.SecretKey})
	// A wrong key is dropped silently.
	wrong := h.dial(t)
	wrong.send(&pgproto3.CancelRequest{ProcessID: key.ProcessID, SecretKey: key.SecretKey + 1})
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.be.mu.Lock()
		got := slices.Clone(h.be.cancels)
		h.be.mu.Unlock()
		if len(got) == 1 && got[0] == (cancelKey{fakePID, fakeSecret}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target got cancels %v, want the real key", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := h.rec.session(t, 0)
	if !slices.Contains(s.kinds(schemas.Client), "CancelRequest") {
		t.Fatalf("cancel not recorded: %v", s.kinds(schemas.Client))
	}
	time.Sleep(100 * time.Millisecond)
	h.be.mu.Lock()
	defer h.be.mu.Unlock()
	if len(h.be.cancels) != 1 {
		t.Fatalf("wrong key reached the target: %v", h.be.cancels)
	}
}

// A backend terminated by an administrator: the agent gets the target's FATAL
// and then the disconnect, and the session ends with that reason.
func TestTargetFatalRelayedAndRecordedAsTheEnd(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.login("app", "good")
	c.untilReady()
	c.send(&pgproto3.Query{String: fakeTerminateQuery})
	e := c.fatalError()
	if e.Code != "57P01" || e.Message != "terminating connection due to administrator command" {
		t.Fatalf("agent got %s %q, want the target's 57P01", e.Code, e.Message)
	}
	if m, err := c.fe.Receive(); err == nil {
		t.Fatalf("connection still open after the FATAL: got %T", m)
	}
	s := h.rec.session(t, 0)
	want := "target ended the session: FATAL 57P01: terminating connection due to administrator command"
	if reason := s.waitEnd(t); reason != want {
		t.Fatalf("end reason %q, want %q", reason, want)
	}
	if got := s.kinds(schemas.Server); got[len(got)-1] != "ErrorResponse" {
		t.Fatalf("server frames %v: the FATAL is not the last one", got)
	}
	// The backend is gone: the gateway sends it no cancel of its own.
	h.be.mu.Lock()
	defer h.be.mu.Unlock()
	if len(h.be.cancels) != 0 {
		t.Fatalf("cancels sent after a target FATAL: %v", h.be.cancels)
	}
}

// The recorded SERVER frames concatenate to what the agent read, byte for byte.
func TestRecordedServerBytesEqualWhatTheAgentRead(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	tee := &bytes.Buffer{}
	c.fe = pgproto3.NewFrontend(pgproto3.NewChunkReader(teeReader{c.conn, tee}), c.conn)
	c.login("app", "good")
	c.untilReady()
	for i := range 5 {
		c.send(&pgproto3.Query{String: strings.Repeat("x", i*1000)})
		c.untilReady()
	}
	c.send(&pgproto3.Terminate{})
	s := h.rec.session(t, 0)
	s.waitEnd(t)
	var rec bytes.Buffer
	for _, f := range s.frames {
		if f.dir == schemas.Server {
			rec.Write(f.payload)
		}
	}
	// The agent also read the password request, sent before the session existed.
	got := tee.Bytes()[len(encode(&pgproto3.AuthenticationCleartextPassword{})):]
	if !bytes.Equal(rec.Bytes(), got) {
		t.Fatalf("recorded %d bytes, agent read %d", rec.Len(), len(got))
	}
}

type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *bytes.Buffer
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

func TestKeyTableIssuesUniqueKeys(t *testing.T) {
	kt := newKeyTable()
	seen := map[cancelKey]bool{}
	// Backends of two targets may share a pid: their keys still differ.
	real := cancelKey{pid: 4242, secret: 7}
	for range 1000 {
		k := kt.issue(&cancelEntry{real: real})
		if seen[k] || k.pid != real.pid || k == real {
			t.Fatalf("bad or duplicate key %+v", k)
		}
		seen[k] = true
	}
	for k := range seen {
		kt.remove(k)
	}
	if len(kt.m) != 0 {
		t.Fatal("keys left after removal")
	}
}

// A client asking for protocol 3.2 and a _pq_ option learns that the gateway
// speaks 3.0 without it, then logs in as usual.
func TestNegotiateProtocolVersion(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	pkt := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 0}, 3<<16|2)
	for _, s := range []string{"user", "agent", "database", "app", "_pq_.compression", "on", ""} {
		pkt = append(append(pkt, s...), 0)
	}
	binary.BigEndian.PutUint32(pkt, uint32(len(pkt)))
	if _, err := c.conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	want := append(msg('v', "\x00\x03\x00\x00\x00\x00\x00\x01_pq_.compression\x00"), encode(&pgproto3.AuthenticationCleartextPassword{})...)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.send(&pgproto3.PasswordMessage{Password: "good"})
	if m := c.recv(); !isAuthOK(m) {
		t.Fatalf("after negotiation: %#v", m)
	}
	c.untilReady()
	if st := h.be.startups[0]; st["_pq_.compression"] != "" {
		t.Fatalf("protocol option forwarded to the target: %v", st)
	}
}

// A target asking for a cleartext password (a fake target's easiest trick) gets
// nothing unless its configuration allows it; the agent is told why.
func TestCleartextTargetRefusedUnlessAllowed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Targets[0].AllowCleartext = false })
	c := h.dial(t)
	m := c.login("app", "good")
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != codeRejected || !strings.Contains(e.Message, "allow_cleartext: true") {
		t.Fatalf("got %#v, want 08004 naming allow_cleartext", m)
	}
}
