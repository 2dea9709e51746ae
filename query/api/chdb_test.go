//go:build chdb

// Integration: the API over the sink's real Store on embedded chDB (build tag chdb,
// CHDB_LIB_PATH naming libchdb.so; see docs/api.md). Rows go in through
// Store.Insert exactly as the sink writes them.

package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgproto3/v2"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/chdb"
)

var (
	chdbOnce  sync.Once
	chdbStore clickhouse.Store
	chdbErr   error
	chdbDir   string
)

// TestMain closes the chDB session before the process exits; leaving it open
// crashes the process on exit under the race detector.
func TestMain(m *testing.M) {
	code := m.Run()
	if chdbStore != nil {
		chdbStore.Close()
	}
	if chdbDir != "" {
		os.RemoveAll(chdbDir)
	}
	os.Exit(code)
}

// realStore opens the process's one chDB store (chDB allows one session per
// process); tests keep apart by their sessions' random ids.
func realStore(t testing.TB) clickhouse.Store {
	t.Helper()
	testenv.CHDBLib(t) // skips under -short, fails under CI without the library
	chdbOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tapline-query-chdb-")
		if err != nil {
			chdbErr = err
			return
		}
		chdbDir = dir
		if chdbStore, chdbErr = chdb.Open(dir, clickhouse.Config{}); chdbErr == nil {
			chdbErr = chdbStore.Migrate(context.Background())
		}
	})
	if chdbErr != nil {
		t.Fatalf("chDB store: %v", chdbErr)
	}
	return chdbStore
}

func withCommands(s schemas.Session, n int64) schemas.Session {
	s.Commands = n
	return s
}

func TestAPIOverCHDB(t *testing.T) {
	store := realStore(t)
	e := newEnvStore(t, Config{SQLMaxRows: 1000}, store)
	iss := e.iss.URL()
	ctx := context.Background()

	// alice: a Postgres session with two statements, one of them an error.
	pg := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: iss, Subject: "alice", Target: "app"})
	pg.Step(time.Millisecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT id, email FROM customers"}))
	pg.Step(2*time.Millisecond).Server("RowDescription", 0, pgMsg(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 23}, {Name: []byte("email"), DataTypeOID: 25}}}))
	pg.Server("DataRow", 0, pgMsg(&pgproto3.DataRow{Values: [][]byte{[]byte("7"), []byte("a@example.com")}}))
	pg.Server("CommandComplete", 0, pgMsg(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}))
	pg.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	pg.Step(time.Second).Client("Query", 0, pgMsg(&pgproto3.Query{String: "DROP TABLE customers"}))
	pg.Step(time.Millisecond).Server("ErrorResponse", 0, pgMsg(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: "must be owner of table customers"}))
	pg.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	pg.End("client closed")
	cmds := []schemas.Command{
		{SessionID: pg.ID, CommandSeq: 1, SeqEnd: 5, Protocol: schemas.Postgres, Target: "app", Subject: "alice", Kind: "query", Text: "SELECT id, email FROM customers", StartedAt: pg.Frames[1].TS, EndedAt: pg.Frames[5].TS, Status: "ok", Rows: 1},
		{SessionID: pg.ID, CommandSeq: 6, SeqEnd: 8, Protocol: schemas.Postgres, Target: "app", Subject: "alice", Kind: "query", Text: "DROP TABLE customers", StartedAt: pg.Frames[6].TS, EndedAt: pg.Frames[8].TS, Status: "error", Error: "must be owner of table customers"},
	}

	// bob: an SSH shell of 600 output chunks, more than one store page of frames.
	sh := sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: iss, Subject: "bob", Target: "box"})
	sh.Step(time.Millisecond).Client("ssh.channel.open", 0, ssh.Marshal(struct{ T string }{"session"}))
	sh.Client("ssh.request.pty-req", 0, ssh.Marshal(struct {
		Term       string
		C, R, W, H uint32
		Modes      string
	}{"xterm", 132, 43, 0, 0, ""}))
	sh.Client("ssh.request.shell", 0, nil)
	var want strings.Builder
	for i := range 600 {
		line := strings.Repeat("é", i%7) + "line\r\n"
		sh.Step(time.Millisecond).Server("ssh.channel.data", 0, []byte(line))
		want.WriteString(line)
	}
	sh.End("client closed")

	// alice again: a session whose stored frame was altered after the fact.
	bad := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: iss, Subject: "alice", Target: "app"})
	bad.Step(time.Millisecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT 1"}))
	bad.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	bad.End("client closed")
	bad.Frames[1].Payload = pgMsg(&pgproto3.Query{String: "SELECT 2"})
	bad.Step(time.Hour) // a later start time than pg, for ordering

	insert(t, store, &clickhouse.Batch{
		Frames:   append(append(append([]schemas.Frame{}, pg.Frames...), sh.Frames...), bad.Frames...),
		Commands: cmds,
		Sessions: []schemas.Session{withCommands(memstore.Summary(pg, schemas.StatusEnded), 2), withCommands(memstore.Summary(sh, schemas.StatusEnded), 0), withCommands(memstore.Summary(bad, schemas.StatusEnded), 1)},
		Token:    "test/" + pg.ID,
	})
	aliceTok, bobTok, audTok := e.token("alice"), e.token("bob"), e.token("audrey", "auditors")

	t.Run("search", func(t *testing.T) {
		var l SessionList
		e.getJSON(aliceTok, "/api/v1/sessions?issuer="+iss, &l)
		ids := map[string]bool{}
		for _, s := range l.Sessions {
			ids[s.SessionID] = true
			if s.Subject != "alice" {
				t.Errorf("alice sees %s's session", s.Subject)
			}
		}
		if !ids[pg.ID] || !ids[bad.ID] || ids[sh.ID] {
			t.Errorf("alice's listing: %v", ids)
		}
		e.getJSON(audTok, "/api/v1/sessions?command=DROP+table&issuer="+iss, &l)
		if len(l.Sessions) != 1 || l.Sessions[0].SessionID != pg.ID || l.Sessions[0].Commands != 2 {
			t.Errorf("command search: %+v", l.Sessions)
		}
		// Keyset pages of one over this issuer's three sessions.
		var paged []string
		cursor := ""
		for range 5 {
			e.getJSON(audTok, "/api/v1/sessions?limit=1&issuer="+iss+"&cursor="+cursor, &l)
			for _, s := range l.Sessions {
				paged = append(paged, s.SessionID)
			}
			if cursor = l.NextCursor; cursor == "" {
				break
			}
		}
		if len(paged) != 3 || paged[0] != bad.ID {
			t.Errorf("pages: %v (bad=%s pg=%s sh=%s)", paged, bad.ID, pg.ID, sh.ID)
		}
	})

	t.Run("access", func(t *testing.T) {
		r1, b1 := e.get(bobTok, "/api/v1/sessions/"+pg.ID+"/replay")
		r2, b2 := e.get(bobTok, "/api/v1/sessions/"+uuid.Must(uuid.NewV7()).String()+"/replay")
		if r1.StatusCode != http.StatusNotFound || r2.StatusCode != http.StatusNotFound || string(b1) != string(b2) {
			t.Errorf("bob on alice's session: %d %s; on a missing one: %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
		}
		var s Session
		e.getJSON(aliceTok, "/api/v1/sessions/"+pg.ID, &s)
		if s.Status != "ended" || s.EndReason != "client closed" || s.EndedAt == nil {
			t.Errorf("session %+v", s)
		}
	})

	t.Run("commands", func(t *testing.T) {
		var l CommandList
		e.getJSON(aliceTok, "/api/v1/sessions/"+pg.ID+"/commands?limit=1", &l)
		if len(l.Commands) != 1 || l.NextFromSeq == nil || *l.NextFromSeq != 2 {
			t.Fatalf("first page %+v", l)
		}
		e.getJSON(aliceTok, "/api/v1/sessions/"+pg.ID+"/commands?limit=1&from_seq=2", &l)
		if len(l.Commands) != 1 || l.Commands[0].Text != "DROP TABLE customers" || l.Commands[0].Error == "" {
			t.Errorf("second page %+v", l)
		}
	})

	t.Run("frames", func(t *testing.T) {
		resp, body := e.get(bobTok, "/api/v1/sessions/"+sh.ID+"/frames")
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		if resp.StatusCode != http.StatusOK || len(lines) != len(sh.Frames) {
			t.Fatalf("%d, %d lines for %d frames", resp.StatusCode, len(lines), len(sh.Frames))
		}
		for i, line := range lines {
			var f Frame
			if err := json.Unmarshal([]byte(line), &f); err != nil || f.Seq != int64(i) {
				t.Fatalf("line %d: seq %d, %v", i, f.Seq, err)
			}
		}
	})

	t.Run("replay", func(t *testing.T) {
		_, body := e.get(aliceTok, "/api/v1/sessions/"+pg.ID+"/replay")
		for _, want := range []string{"SELECT id, email FROM customers\n id | email        \n----+---------------\n 7  | a@example.com\n(1 row)\nSELECT 1\n",
			"DROP TABLE customers\nERROR:  must be owner of table customers (SQLSTATE 42501)"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("transcript lacks %q:\n%s", want, body)
			}
		}
		resp, body := e.get(bobTok, "/api/v1/sessions/"+sh.ID+"/replay?format=asciicast")
		if resp.Header.Get("Content-Type") != "application/x-asciicast" {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		if !strings.Contains(lines[0], `"width":132,"height":43`) {
			t.Errorf("header %s", lines[0])
		}
		var got strings.Builder
		for _, l := range lines[1:] {
			var ev []any
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			got.WriteString(ev[2].(string))
		}
		if got.String() != want.String() {
			t.Errorf("asciicast output (%d bytes) differs from the recorded output (%d bytes)", got.Len(), want.Len())
		}
	})

	t.Run("verify", func(t *testing.T) {
		var rep verify.Report
		for _, id := range []string{pg.ID, sh.ID} {
			e.getJSON(audTok, "/api/v1/sessions/"+id+"/verify", &rep)
			// The server trusts no keys here: intact, and untrusted rather than ok.
			if rep.Status != verify.StatusUntrusted || len(rep.Problems) != 0 || rep.Frames < 10 {
				t.Errorf("%s: %+v", id, rep)
			}
		}
		e.getJSON(aliceTok, "/api/v1/sessions/"+bad.ID+"/verify", &rep)
		if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Kind != verify.ProblemDigest || rep.Problems[0].Seq != 1 {
			t.Errorf("altered session: %+v", rep)
		}
	})

	t.Run("sql", func(t *testing.T) {
		sql := func(q string) (int, SQLResult, string) {
			body, _ := json.Marshal(SQLRequest{Query: q})
			resp, out := e.do(audTok, http.MethodPost, "/api/v1/sql", "application/json", strings.NewReader(string(body)))
			var res SQLResult
			json.Unmarshal(out, &res)
			return resp.StatusCode, res, string(out)
		}
		countFrames := "SELECT count() AS n FROM frames WHERE session_id = '" + sh.ID + "'"
		code, res, body := sql(countFrames)
		if code != http.StatusOK || len(res.Rows) != 1 || res.Rows[0][0] != float64(len(sh.Frames)) {
			t.Fatalf("count: %d %s", code, body)
		}
		// The limits reach ClickHouse as settings of the query.
		code, res, body = sql("SELECT getSetting('readonly') AS ro, getSetting('result_overflow_mode') AS mode")
		if code != http.StatusOK || res.Rows[0][0] != float64(1) || res.Rows[0][1] != "throw" {
			t.Errorf("settings in force: %d %s", code, body)
		}
		for _, q := range []string{
			"INSERT INTO frames (session_id, seq) VALUES ('x', 0)",
			"ALTER TABLE frames DELETE WHERE session_id = '" + sh.ID + "'",
			"DROP TABLE frames",
			"TRUNCATE TABLE sessions",
			"SELECT 1; DROP TABLE frames",
			"SELECT 1 SETTINGS readonly = 0",
			"WITH 1 AS x INSERT INTO frames (session_id, seq) VALUES ('x', 0)",
		} {
			code, _, body := sql(q)
			if code != http.StatusBadRequest {
				t.Errorf("%q: %d %s", q, code, body)
			}
		}
		if code, res, body = sql(countFrames); code != http.StatusOK || len(res.Rows) != 1 || res.Rows[0][0] != float64(len(sh.Frames)) {
			t.Errorf("frames changed by refused statements: %d %s", code, body)
		}
		resp, _ := e.do(bobTok, http.MethodPost, "/api/v1/sql", "text/plain", strings.NewReader("SELECT 1"))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob's SQL: %d", resp.StatusCode)
		}
		if code, _, body = sql("SELECT number FROM system.numbers LIMIT 5000"); code != http.StatusBadRequest || !strings.Contains(body, "TOO_MANY_ROWS") {
			t.Errorf("past max_result_rows: %d %s", code, body)
		}
		// The statement after an overflowing one gets its own result.
		if code, res, body = sql(countFrames); code != http.StatusOK || len(res.Rows) != 1 || res.Rows[0][0] != float64(len(sh.Frames)) {
			t.Errorf("after an overflow: %d %s", code, body)
		}
	})

	t.Run("live", func(t *testing.T) {
		live := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: iss, Subject: "alice", Target: "app"})
		live.Step(time.Millisecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT pg_sleep(1)"}))
		live.Server("CommandComplete", 0, pgMsg(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}))
		live.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
		live.End("client closed")
		// Only the first frames are stored, and no summary yet: the processors lag.
		insert(t, store, &clickhouse.Batch{Frames: live.Frames[:2]})
		done := make(chan string, 1)
		go func() {
			_, body := e.get(aliceTok, "/api/v1/sessions/"+live.ID+"/replay?follow=true")
			done <- string(body)
		}()
		time.Sleep(300 * time.Millisecond)
		insert(t, store, &clickhouse.Batch{Frames: live.Frames[2:]})
		select {
		case body := <-done:
			if !strings.Contains(body, "SELECT pg_sleep(1)\nSELECT 1\n") || !strings.Contains(body, "session ended: client closed") {
				t.Errorf("followed replay:\n%s", body)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("follow did not end at session.end")
		}
		_ = ctx
	})
}

// Whoever can write the store replaces a masked payload: ClickHouse keeps the last
// row written for a (session_id, seq), so one insert is enough. The chain does not
// cover a masked payload; the processor's signature does, and verify fails.
func TestReplacedMaskedPayloadFailsVerify(t *testing.T) {
	store := realStore(t)
	_, gw, _ := ed25519.GenerateKey(nil)
	_, proc, _ := ed25519.GenerateKey(nil)
	e := newEnvStore(t, Config{TrustedGatewayKeys: []ed25519.PublicKey{gw.Public().(ed25519.PublicKey)},
		TrustedProcessorKeys: []ed25519.PublicKey{proc.Public().(ed25519.PublicKey)}}, store)
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "app"})
	b.Key = gw
	b.Step(time.Millisecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT 'bob@example.com'"}))
	b.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	b.End("client closed")
	masked := &b.Frames[1]
	masked.Payload = pgMsg(&pgproto3.Query{String: "SELECT '[masked:email]'"})
	masked.PayloadSalt, masked.Masks = nil, map[string]int64{"email": 1}
	if err := schemas.SignMasked(proc, masked); err != nil {
		t.Fatal(err)
	}
	insert(t, store, &clickhouse.Batch{Frames: b.Frames, Sessions: []schemas.Session{memstore.Summary(b, schemas.StatusEnded)}})
	tok := e.token("alice")
	var rep verify.Report
	e.getJSON(tok, "/api/v1/sessions/"+b.ID+"/verify", &rep)
	if !rep.OK || rep.Masked != 1 || rep.MaskedSigs.Status != verify.MaskedTrusted {
		t.Fatalf("masked session as recorded: %+v", rep)
	}

	forged := *masked
	forged.Payload = pgMsg(&pgproto3.Query{String: "SELECT 'nothing to see'"})
	insert(t, store, &clickhouse.Batch{Frames: []schemas.Frame{forged}})
	e.getJSON(tok, "/api/v1/sessions/"+b.ID+"/verify", &rep)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Kind != verify.ProblemMasked || rep.Problems[0].Seq != 1 {
		t.Errorf("replaced masked payload: %+v", rep)
	}
}
