package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgproto3/v2"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

type memAccessLog struct {
	mu      sync.Mutex
	records []Access
}

func (l *memAccessLog) Record(a Access) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, a)
	return nil
}

func (l *memAccessLog) all() []Access {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Access(nil), l.records...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t      testing.TB
	url    string
	store  *memstore.Store
	iss    *devissuer.Issuer
	access *memAccessLog
	logs   *syncBuffer
}

// Issuer is the dev issuer over real HTTP and tokens go through auth.Verifier, as
// in production; only the store is in memory.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	m := memstore.NewStore()
	e := newEnvStore(t, cfg, m)
	e.store = m
	return e
}

// newEnvStore serves the API over any store (chDB in the integration test).
func newEnvStore(t testing.TB, cfg Config, store Store) *env {
	t.Helper()
	iss, err := devissuer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go iss.Serve(ctx, "")
	waitReachable(t, iss.URL()+"/.well-known/openid-configuration")
	v, err := auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, iss: iss, access: &memAccessLog{}, logs: &syncBuffer{}}
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	if cfg.AccessLog == nil {
		cfg.AccessLog = e.access
	}
	if cfg.FollowPoll == 0 {
		cfg.FollowPoll = 10 * time.Millisecond
	}
	srv := httptest.NewServer(New(cfg, store, v))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func waitReachable(t testing.TB, u string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not reachable", u)
}

func (e *env) token(sub string, groups ...string) string {
	tok, err := e.iss.Mint(sub, groups, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) do(tok, method, path, contentType string, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *env) get(tok, path string) (*http.Response, []byte) {
	return e.do(tok, http.MethodGet, path, "", nil)
}

func (e *env) getJSON(tok, path string, v any) {
	e.t.Helper()
	resp, body := e.get(tok, path)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		e.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// record stores a session's frames and, unless summary is false, its summary.
func (e *env) record(b *sessiontest.Builder, summary bool) {
	e.store.AddFrames(b.Frames...)
	if summary {
		e.store.AddSessions(memstore.Summary(b, schemas.StatusEnded))
	}
}

// pgSession records a small Postgres session of sub's.
func (e *env) pgSession(sub, issuer string) *sessiontest.Builder {
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: issuer, Subject: sub, Target: "app"})
	q := sessiontest.Must((&pgproto3.Query{String: "SELECT 1 AS one"}).Encode(nil))
	b.Step(time.Millisecond).Client("Query", 0, q)
	b.Step(time.Millisecond).Server("RowDescription", 0, sessiontest.Must((&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("one"), DataTypeOID: 23}}}).Encode(nil)))
	b.Server("DataRow", 0, sessiontest.Must((&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}).Encode(nil)))
	b.Server("CommandComplete", 0, sessiontest.Must((&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil)))
	b.Server("ReadyForQuery", 0, sessiontest.Must((&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(nil)))
	return b.End("client closed")
}

func TestTokenRequired(t *testing.T) {
	e := newEnv(t, Config{})
	resp, body := e.get("", "/api/v1/sessions")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if !strings.Contains(string(body), "unauthenticated") {
		t.Errorf("body %s", body)
	}
	resp, body = e.get("not.a.jwt", "/api/v1/sessions")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "invalid_token") {
		t.Errorf("bad token: %d %s", resp.StatusCode, body)
	}
	// A token from another issuer (its own key) does not verify.
	other, _ := devissuer.Open(t.TempDir())
	forged, _ := other.Mint("alice", []string{"auditors"}, time.Hour)
	if resp, _ := e.get(forged, "/api/v1/sessions"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("foreign issuer's token: %d", resp.StatusCode)
	}
}

func TestOthersSessionsAreIndistinguishableFromMissingOnes(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.pgSession("alice", e.iss.URL())
	e.record(alice, true)
	// The same subject at another issuer is another identity.
	elsewhere := e.pgSession("alice", "https://other-idp.example")
	e.record(elsewhere, true)
	missing := uuid.Must(uuid.NewV7()).String()
	aliceTok, bobTok, auditorTok := e.token("alice"), e.token("bob", "dev"), e.token("carol", "auditors")

	for _, suffix := range []string{"", "/commands", "/frames", "/replay", "/replay?format=json", "/verify"} {
		if resp, body := e.get(aliceTok, "/api/v1/sessions/"+alice.ID+suffix); resp.StatusCode != http.StatusOK {
			t.Errorf("owner GET %s: %d %s", suffix, resp.StatusCode, body)
		}
		if resp, body := e.get(auditorTok, "/api/v1/sessions/"+alice.ID+suffix); resp.StatusCode != http.StatusOK {
			t.Errorf("auditor GET %s: %d %s", suffix, resp.StatusCode, body)
		}
		r1, b1 := e.get(bobTok, "/api/v1/sessions/"+alice.ID+suffix)
		r2, b2 := e.get(bobTok, "/api/v1/sessions/"+missing+suffix)
		r3, b3 := e.get(aliceTok, "/api/v1/sessions/"+elsewhere.ID+suffix)
		if r1.StatusCode != http.StatusNotFound || r2.StatusCode != http.StatusNotFound || r3.StatusCode != http.StatusNotFound {
			t.Errorf("%s: statuses %d %d %d, want 404", suffix, r1.StatusCode, r2.StatusCode, r3.StatusCode)
		}
		if !bytes.Equal(b1, b2) || !bytes.Equal(b1, b3) || r1.Header.Get("Content-Type") != r2.Header.Get("Content-Type") {
			t.Errorf("%s: other's session answered %q, missing one %q, other issuer's %q", suffix, b1, b2, b3)
		}
	}

	// The denied reads are in the access trail, marked as such.
	var denied int
	for _, a := range e.access.all() {
		if a.Subject == "bob" && a.SessionID == alice.ID && a.Denied && a.Status == http.StatusNotFound {
			denied++
		}
	}
	if denied != 6 {
		t.Errorf("%d denied reads of alice's session by bob logged, want 6", denied)
	}
}

func TestLiveSessionWithoutSummaryIsVisibleToItsOwner(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.pgSession("alice", e.iss.URL())
	e.record(b, false)
	var s Session
	e.getJSON(e.token("alice"), "/api/v1/sessions/"+b.ID, &s)
	if s.Subject != "alice" || s.Status != schemas.StatusActive || s.Protocol != "POSTGRES" {
		t.Errorf("session from its start frame: %+v", s)
	}
	if resp, _ := e.get(e.token("bob"), "/api/v1/sessions/"+b.ID); resp.StatusCode != http.StatusNotFound {
		t.Errorf("other subject: %d", resp.StatusCode)
	}
}

func TestListSessionsScopesAndPaginates(t *testing.T) {
	e := newEnv(t, Config{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var aliceIDs []string
	for i := range 7 {
		sub, proto := "alice", schemas.Postgres
		if i%3 == 2 {
			sub = "bob"
		}
		if i%2 == 1 {
			proto = schemas.SSH
		}
		id := uuid.Must(uuid.NewV7()).String()
		// Two sessions share a start time: the keyset must still order and page them.
		started := base.Add(time.Duration(i/2) * time.Hour)
		e.store.AddSessions(schemas.Session{SessionID: id, Subject: sub, Issuer: e.iss.URL(), Protocol: proto, Target: "app", StartedAt: started, Status: schemas.StatusEnded})
		if sub == "alice" {
			aliceIDs = append(aliceIDs, id)
		}
	}
	e.store.AddCommands(schemas.Command{SessionID: aliceIDs[1], Text: "DROP TABLE customers"})
	tok := e.token("alice")

	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		var page SessionList
		e.getJSON(tok, "/api/v1/sessions?limit=2&cursor="+url.QueryEscape(next), &page)
		for _, s := range page.Sessions {
			if s.Subject != "alice" {
				t.Fatalf("alice sees %s's session", s.Subject)
			}
			seen = append(seen, s.SessionID)
		}
		if next = page.NextCursor; next == "" || pages > 10 {
			break
		}
	}
	if len(seen) != len(aliceIDs) {
		t.Fatalf("paged through %d sessions, alice has %d: %v", len(seen), len(aliceIDs), seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Errorf("session %s listed twice", seen[i])
		}
	}

	var l SessionList
	e.getJSON(tok, "/api/v1/sessions?subject=bob", &l)
	if len(l.Sessions) != 0 {
		t.Errorf("alice asking for bob's sessions got %d", len(l.Sessions))
	}
	e.getJSON(e.token("carol", "auditors"), "/api/v1/sessions?subject=bob", &l)
	if len(l.Sessions) != 2 {
		t.Errorf("auditor sees %d of bob's sessions, want 2", len(l.Sessions))
	}
	e.getJSON(tok, "/api/v1/sessions?protocol=ssh", &l)
	for _, s := range l.Sessions {
		if s.Protocol != "SSH" {
			t.Errorf("protocol filter let %s through", s.Protocol)
		}
	}
	e.getJSON(tok, "/api/v1/sessions?command=drop+table", &l)
	if len(l.Sessions) != 1 || l.Sessions[0].SessionID != aliceIDs[1] {
		t.Errorf("command search: %+v", l.Sessions)
	}
	e.getJSON(tok, "/api/v1/sessions?since=2026-01-01T01:00:00Z&until=2026-01-01T02:00:00Z", &l)
	for _, s := range l.Sessions {
		if s.StartedAt.Hour() != 1 {
			t.Errorf("time filter let %s through", s.StartedAt)
		}
	}
	for _, bad := range []string{"protocol=ftp", "since=yesterday", "limit=0", "limit=5000", "cursor=xyz", "status=weird"} {
		if resp, body := e.get(tok, "/api/v1/sessions?"+bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

func TestFramesStreamIsExactAndRanged(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.pgSession("alice", e.iss.URL())
	e.record(b, true)
	resp, body := e.get(e.token("alice"), "/api/v1/sessions/"+b.ID+"/frames?from=1&to=3")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want seq 1..3, got %d lines", len(lines))
	}
	prev := b.Frames[0].Hash
	for i, line := range lines {
		var f Frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		// Rebuild the frame from JSON and check its link: the encoding is lossless.
		sf := schemas.Frame{SessionID: f.SessionID, Seq: f.Seq, TS: f.TS, Direction: schemas.Direction(f.Direction),
			Protocol: schemas.Protocol(f.Protocol), Kind: f.Kind, Channel: f.Channel, Fragment: f.Fragment, Final: f.Final,
			Payload: f.Payload, PayloadSalt: unhex(t, f.PayloadSalt), PayloadDigest: unhex(t, f.PayloadDigest),
			PrevHash: unhex(t, f.PrevHash), Hash: unhex(t, f.Hash), GatewayID: f.GatewayID}
		if sf.Seq != int64(i+1) {
			t.Errorf("line %d has seq %d", i, sf.Seq)
		}
		if err := schemas.CheckLink(&sf, prev); err != nil {
			t.Errorf("frame from JSON does not verify: %v", err)
		}
		prev = sf.Hash
	}
	if resp, _ := e.get(e.token("alice"), "/api/v1/sessions/"+b.ID+"/frames?from=5&to=2"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("inverted range: %d", resp.StatusCode)
	}
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplayTranscript(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.pgSession("alice", e.iss.URL())
	e.record(b, true)
	resp, body := e.get(e.token("alice"), "/api/v1/sessions/"+b.ID+"/replay")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "SELECT 1 AS one\n one\n-----\n 1  \n(1 row)\nSELECT 1\n") {
		t.Errorf("transcript:\n%s", body)
	}
	if resp, body := e.get(e.token("alice"), "/api/v1/sessions/"+b.ID+"/replay?format=asciicast"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("asciicast of Postgres: %d %s", resp.StatusCode, body)
	}
}

// A live session replays with follow=true: frames recorded after the request started
// reach the client, and the stream ends at session.end.
func TestReplayFollowsALiveSession(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.pgSession("alice", e.iss.URL())
	split := 4
	e.store.AddFrames(b.Frames[:split]...)
	req, _ := http.NewRequest(http.MethodGet, e.url+"/api/v1/sessions/"+b.ID+"/replay?format=json&follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("alice"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var types []string
	for sc.Scan() {
		var ev struct{ Type string }
		json.Unmarshal(sc.Bytes(), &ev)
		types = append(types, ev.Type)
		if ev.Type == "session.start" {
			e.store.AddFrames(b.Frames[split:]...) // the rest is recorded while the client watches
		}
	}
	if got := strings.Join(types, ","); got != "session.start,statement,session.end" {
		t.Errorf("followed replay events: %s", got)
	}
}

// The first replay event is sent while the store is still held before its second
// page: replay streams instead of reading the session first.
func TestReplayStreamsBeforeReadingTheWholeSession(t *testing.T) {
	e := newEnv(t, Config{})
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "app"})
	q := sessiontest.Must((&pgproto3.Query{String: "SELECT 1"}).Encode(nil))
	cc := sessiontest.Must((&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil))
	rfq := sessiontest.Must((&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(nil))
	for range 200 {
		b.Client("Query", 0, q).Server("CommandComplete", 0, cc).Server("ReadyForQuery", 0, rfq)
	}
	e.record(b.End("done"), true)
	gate := make(chan struct{})
	e.store.PageGate = gate

	req, _ := http.NewRequest(http.MethodGet, e.url+"/api/v1/sessions/"+b.ID+"/replay?format=json", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("alice"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if !strings.Contains(line, `"session.start"`) {
			t.Errorf("first line %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no replay event before the store's second page was allowed")
	}
	close(gate)
}

func TestVerifyEndpoint(t *testing.T) {
	e := newEnv(t, Config{})
	good := e.pgSession("alice", e.iss.URL())
	e.record(good, true)
	var rep verify.Report
	e.getJSON(e.token("alice"), "/api/v1/sessions/"+good.ID+"/verify", &rep)
	// No trusted keys configured: intact, but untrusted rather than ok.
	if rep.OK || rep.Status != verify.StatusUntrusted || rep.Signature.Status != verify.SigUntrustedConsistent {
		t.Errorf("intact session: %+v", rep)
	}

	bad := e.pgSession("alice", e.iss.URL())
	bad.Frames[2].Payload = []byte("tampered")
	e.record(bad, true)
	e.getJSON(e.token("carol", "auditors"), "/api/v1/sessions/"+bad.ID+"/verify", &rep)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Seq != 2 || rep.Problems[0].Kind != verify.ProblemDigest {
		t.Errorf("tampered session: %+v", rep)
	}
}

func TestVerifyWithTrustedKeys(t *testing.T) {
	_, gw, _ := ed25519.GenerateKey(nil)
	_, rogue, _ := ed25519.GenerateKey(nil)
	e := newEnv(t, Config{TrustedGatewayKeys: []ed25519.PublicKey{gw.Public().(ed25519.PublicKey)}})
	signedBy := func(key ed25519.PrivateKey) string {
		b := sessiontest.New(schemas.SSH, schemas.SessionStart{Subject: "alice", Issuer: e.iss.URL()})
		b.Key = key
		b.Step(time.Millisecond).Client("ssh.channel.open", 0, nil).End("client closed")
		e.record(b, true)
		return b.ID
	}
	var rep verify.Report
	e.getJSON(e.token("alice"), "/api/v1/sessions/"+signedBy(gw)+"/verify", &rep)
	if !rep.OK || rep.Signature.Status != verify.SigTrusted {
		t.Errorf("gateway-signed session: %+v", rep)
	}
	e.getJSON(e.token("alice"), "/api/v1/sessions/"+signedBy(rogue)+"/verify", &rep)
	if rep.OK || rep.Signature.Status != verify.SigUntrustedKey {
		t.Errorf("session signed by an unknown key: %+v", rep)
	}
}

func TestSQLIsForAuditorsOnly(t *testing.T) {
	e := newEnv(t, Config{SQLMaxRows: 50})
	resp, body := e.do(e.token("bob"), http.MethodPost, "/api/v1/sql", "application/json", strings.NewReader(`{"query":"SELECT 1"}`))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("non-auditor: %d %s", resp.StatusCode, body)
	}
	if len(e.store.SQLSeen()) != 0 {
		t.Error("a non-auditor's statement reached the store")
	}
	tok := e.token("carol", "auditors")
	var res SQLResult
	resp, body = e.do(tok, http.MethodPost, "/api/v1/sql", "application/json", strings.NewReader(`{"query":"SELECT count() FROM sessions","max_rows":10}`))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil {
		t.Fatalf("auditor: %d %s", resp.StatusCode, body)
	}
	if res.Rows[0][0].(float64) != 10 {
		t.Errorf("request limit not applied: %v", res.Rows)
	}
	resp, body = e.do(tok, http.MethodPost, "/api/v1/sql", "text/plain", strings.NewReader(`SELECT 1`))
	json.Unmarshal(body, &res)
	if resp.StatusCode != http.StatusOK || res.Rows[0][0].(float64) != 50 {
		t.Errorf("text body or server cap: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(tok, http.MethodPost, "/api/v1/sql", "application/json", strings.NewReader(`{}`)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("empty statement: %d", resp.StatusCode)
	}
	var logged bool
	for _, a := range e.access.all() {
		logged = logged || (a.Subject == "carol" && a.SQL == "SELECT count() FROM sessions")
	}
	if !logged {
		t.Error("the auditor's statement is not in the access trail")
	}
}

func TestEveryReadIsLogged(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.pgSession("alice", e.iss.URL())
	e.record(b, true)
	e.get(e.token("alice"), "/api/v1/sessions/"+b.ID+"/replay")
	recs := e.access.all()
	if len(recs) != 1 {
		t.Fatalf("%d access records", len(recs))
	}
	a := recs[0]
	if a.Event != "api_access" || a.Subject != "alice" || a.Issuer != e.iss.URL() || a.SessionID != b.ID ||
		a.Route != "GET /api/v1/sessions/{id}/replay" || a.Status != 200 || a.Bytes == 0 {
		t.Errorf("record %+v", a)
	}
	if !strings.Contains(e.logs.String(), `"msg":"api_access"`) || !strings.Contains(e.logs.String(), b.ID) {
		t.Errorf("slog output lacks the api_access line: %s", e.logs.String())
	}
}

func TestFileAccessLog(t *testing.T) {
	path := t.TempDir() + "/access.jsonl"
	l, err := OpenFileAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"alice", "bob"} {
		if err := l.Record(Access{Event: "api_access", Subject: sub, SessionID: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"subject":"bob"`) {
		t.Errorf("file holds %q", b)
	}
}

func TestOpenAPIDocumentCoversTheRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	resp, body := e.get("", "/api/v1/openapi.yaml")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d", resp.StatusCode)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	for _, route := range []string{"get /api/v1/sessions", "get /api/v1/sessions/{id}", "get /api/v1/sessions/{id}/commands",
		"get /api/v1/sessions/{id}/frames", "get /api/v1/sessions/{id}/replay", "get /api/v1/sessions/{id}/verify", "post /api/v1/sql"} {
		method, path, _ := strings.Cut(route, " ")
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("openapi.yaml lacks %s", route)
		}
	}
}

func TestReadStatement(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1": true, "  select * from frames": true, "WITH x AS (SELECT 1) SELECT * FROM x": true,
		"(SELECT 1)": true, "-- who\nSELECT 1": true, "/* c */ select 1": true,
		"INSERT INTO frames VALUES (1)": false, "DROP TABLE frames": false, "": false, "1": false,
		"selectx": false, "-- only a comment": false, "/* unterminated": false,
	} {
		if got := readStatement(q); got != want {
			t.Errorf("readStatement(%q) = %v", q, got)
		}
	}
}
