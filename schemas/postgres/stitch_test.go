package postgres

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pgSession records Postgres messages and stitches them as they come.
type pgSession struct {
	t    *testing.T
	rec  *sessiontest.Session
	pg   Stitcher
	cmds []schemas.Command
}

func newPG(t *testing.T) *pgSession {
	rec := sessiontest.Start(schemas.Postgres, schemas.SessionStart{Subject: "alice", Target: "app"}, sessiontest.NewKey(1), t0)
	return &pgSession{t: t, rec: rec}
}

// send records messages from dir and feeds them to the stitcher; it returns the seq
// of the first one.
func (s *pgSession) send(dir schemas.Direction, msgs ...interface{ Encode([]byte) ([]byte, error) }) int64 {
	first := s.rec.Seq()
	for _, m := range msgs {
		b, err := m.Encode(nil)
		if err != nil {
			s.t.Fatal(err)
		}
		f := s.rec.Add(dir, kindOf(m), 0, b)
		s.cmds = append(s.cmds, s.pg.Frame(f, protocol.Limits{})...)
	}
	return first
}

func kindOf(m any) string { return reflect.TypeOf(m).Elem().Name() }

func (s *pgSession) client(msgs ...interface{ Encode([]byte) ([]byte, error) }) int64 {
	return s.send(schemas.Client, msgs...)
}

func (s *pgSession) server(msgs ...interface{ Encode([]byte) ([]byte, error) }) int64 {
	return s.send(schemas.Server, msgs...)
}

func (s *pgSession) take() []schemas.Command {
	c := s.cmds
	s.cmds = nil
	return c
}

func rowDesc(names ...string) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{}
	for _, n := range names {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(n), DataTypeOID: 25, DataTypeSize: -1})
	}
	return rd
}

func row(vals ...string) *pgproto3.DataRow {
	r := &pgproto3.DataRow{}
	for _, v := range vals {
		r.Values = append(r.Values, []byte(v))
	}
	return r
}

func cc(tag string) *pgproto3.CommandComplete {
	return &pgproto3.CommandComplete{CommandTag: []byte(tag)}
}

var rfqIdle = &pgproto3.ReadyForQuery{TxStatus: 'I'}

func one(t *testing.T, cmds []schemas.Command) schemas.Command {
	t.Helper()
	if len(cmds) != 1 {
		t.Fatalf("want 1 command, got %d: %+v", len(cmds), cmds)
	}
	return cmds[0]
}

func TestSimpleQuery(t *testing.T) {
	s := newPG(t)
	q := s.client(&pgproto3.Query{String: "SELECT id, email FROM users"})
	s.server(rowDesc("id", "email"), row("1", "a"), row("2", "b"), row("3", "c"))
	done := s.server(cc("SELECT 3"))
	if len(s.cmds) != 0 {
		t.Fatal("query completed before ReadyForQuery")
	}
	s.server(rfqIdle)
	c := one(t, s.take())
	if c.Kind != "query" || c.Text != "SELECT id, email FROM users" || c.Rows != 3 || c.Status != protocol.StatusOK ||
		c.CommandSeq != q || c.SeqEnd != done {
		t.Errorf("%+v", c)
	}
	// Duration: from the Query frame to the completion (1 ms per frame in the fixture).
	if got := c.EndedAt.Sub(c.StartedAt); got != time.Duration(done-q)*time.Millisecond {
		t.Errorf("duration %v", got)
	}
}

func TestMultiStatementQueryIsOneCommand(t *testing.T) {
	s := newPG(t)
	s.client(&pgproto3.Query{String: "BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2), (3); COMMIT"})
	s.server(cc("BEGIN"), cc("INSERT 0 1"), cc("INSERT 0 2"), cc("COMMIT"), rfqIdle)
	c := one(t, s.take())
	if c.Rows != 3 || c.Status != protocol.StatusOK {
		t.Errorf("%+v", c)
	}

	s.client(&pgproto3.Query{String: "SELECT 1; SELECT * FROM missing; SELECT 2"})
	s.server(rowDesc("?column?"), row("1"), cc("SELECT 1"),
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: `relation "missing" does not exist`}, rfqIdle)
	c = one(t, s.take())
	if c.Status != protocol.StatusError || c.Error != `ERROR 42P01: relation "missing" does not exist` || c.Rows != 1 {
		t.Errorf("%+v", c)
	}
}

func TestEmptyQuery(t *testing.T) {
	s := newPG(t)
	s.client(&pgproto3.Query{String: ";"})
	s.server(&pgproto3.EmptyQueryResponse{}, rfqIdle)
	if c := one(t, s.take()); c.Status != protocol.StatusOK || c.Rows != 0 {
		t.Errorf("%+v", c)
	}
}

func TestExtendedProtocolWithParameters(t *testing.T) {
	s := newPG(t)
	// Prepare with Describe, as pgx does, then execute it twice later.
	s.client(&pgproto3.Parse{Name: "s1", Query: "SELECT id, email FROM users WHERE id = $1 AND role = $2"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	s.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23, 25}},
		rowDesc("id", "email"), rfqIdle)
	if len(s.take()) != 0 {
		t.Fatal("a Parse is not a command")
	}
	if !reflect.DeepEqual(s.pg.RowColumns(), []string(nil)) {
		t.Errorf("no result streaming, got columns %v", s.pg.RowColumns())
	}
	exec := s.client(&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1, 0},
		Parameters: [][]byte{{0, 0, 0, 42}, []byte("admin")}}, &pgproto3.Execute{}, &pgproto3.Sync{}) + 1
	s.server(&pgproto3.BindComplete{})
	if got := s.pg.RowColumns(); !reflect.DeepEqual(got, []string{"id", "email"}) {
		t.Errorf("columns for the DataRows of the Execute: %v", got)
	}
	s.server(row("42", "x@y"), cc("SELECT 1"), rfqIdle)
	c := one(t, s.take())
	want := []string{`\x0000002a`, "admin"}
	if c.Kind != "prepared" || c.Text != "SELECT id, email FROM users WHERE id = $1 AND role = $2" ||
		!reflect.DeepEqual(c.Params, want) || c.Rows != 1 || c.Status != protocol.StatusOK || c.CommandSeq != exec {
		t.Errorf("%+v", c)
	}
	// NULL parameters and an unnamed statement.
	s.client(&pgproto3.Parse{Query: "UPDATE t SET a = $1"}, &pgproto3.Bind{Parameters: [][]byte{nil}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	s.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, cc("UPDATE 7"), rfqIdle)
	c = one(t, s.take())
	if c.Text != "UPDATE t SET a = $1" || !reflect.DeepEqual(c.Params, []string{"NULL"}) || c.Rows != 7 {
		t.Errorf("%+v", c)
	}
}

func TestExtendedProtocolErrors(t *testing.T) {
	s := newPG(t)
	// A syntax error in Parse: the Execute after it never runs, and carries the error.
	s.client(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	s.server(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "SELEC"`}, rfqIdle)
	c := one(t, s.take())
	if c.Status != protocol.StatusError || c.Text != "SELEC 1" || c.Error != `ERROR 42601: syntax error at or near "SELEC"` {
		t.Errorf("%+v", c)
	}
	// Two statements in one pipeline; the first fails while executing: the second is
	// skipped by the server.
	s.client(&pgproto3.Parse{Name: "a", Query: "INSERT INTO t VALUES (1)"}, &pgproto3.Bind{PreparedStatement: "a"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "b", Query: "INSERT INTO t VALUES (2)"}, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	s.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505", Message: "duplicate key"}, rfqIdle)
	cmds := s.take()
	if len(cmds) != 2 || cmds[0].Status != protocol.StatusError || cmds[1].Status != protocol.StatusCancelled || cmds[1].Text != "INSERT INTO t VALUES (2)" {
		t.Errorf("%+v", cmds)
	}
	// A Parse alone that fails is recorded as such.
	p := s.client(&pgproto3.Parse{Name: "c", Query: "SELECT nope("}, &pgproto3.Sync{})
	s.server(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: "syntax error"}, rfqIdle)
	c = one(t, s.take())
	if c.Kind != "parse" || c.CommandSeq != p || c.Text != "SELECT nope(" || c.Status != protocol.StatusError {
		t.Errorf("%+v", c)
	}
	if _, ok := s.pg.StatementText("c"); ok {
		t.Error("a statement that failed to parse is kept")
	}
}

func TestPortalSuspendedAndCopy(t *testing.T) {
	s := newPG(t)
	s.client(&pgproto3.Parse{Query: "SELECT g FROM generate_series(1,3) g"}, &pgproto3.Bind{DestinationPortal: "p"},
		&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Flush{})
	s.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, row("1"), row("2"), &pgproto3.PortalSuspended{})
	c := one(t, s.take())
	if c.Rows != 2 || c.Status != protocol.StatusOK {
		t.Errorf("first batch %+v", c)
	}
	s.client(&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
	s.server(row("3"), cc("SELECT 1"), rfqIdle)
	if c := one(t, s.take()); c.Rows != 1 || c.Text != "SELECT g FROM generate_series(1,3) g" {
		t.Errorf("second batch %+v", c)
	}

	s.client(&pgproto3.Query{String: "COPY t (a, b) FROM STDIN"})
	s.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0}})
	s.client(&pgproto3.CopyData{Data: []byte("1\tx\n")}, &pgproto3.CopyData{Data: []byte("2\ty\n")}, &pgproto3.CopyDone{})
	s.server(cc("COPY 2"), rfqIdle)
	if c := one(t, s.take()); c.Kind != "copy" || c.Rows != 2 || c.Status != protocol.StatusOK {
		t.Errorf("copy %+v", c)
	}
}

func TestFlushReportsUnfinishedCommands(t *testing.T) {
	s := newPG(t)
	s.client(&pgproto3.Query{String: "SELECT pg_sleep(3600)"})
	end := s.rec.End("client disconnected")
	cmds := s.pg.Flush(end, "session ended before the command completed")
	c := one(t, cmds)
	if c.Status != protocol.StatusIncomplete || c.Error != "session ended before the command completed" || c.Text != "SELECT pg_sleep(3600)" {
		t.Errorf("%+v", c)
	}
}

func TestFragmentedQueryIsStitchedWhole(t *testing.T) {
	s := newPG(t)
	sql := "INSERT INTO docs VALUES ('abc', 'a longer text that spans several fragments')"
	b, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	frames := s.rec.AddFragmented(schemas.Client, "Query", 0, b, 10)
	for i := range frames {
		s.cmds = append(s.cmds, s.pg.Frame(&frames[i], protocol.Limits{})...)
	}
	s.server(cc("INSERT 0 1"), rfqIdle)
	c := one(t, s.take())
	if c.Text != sql || c.CommandSeq != frames[0].Seq || c.Rows != 1 {
		t.Errorf("%+v (fragments %d)", c, len(frames))
	}
}

func TestTagRows(t *testing.T) {
	for tag, want := range map[string]int64{"SELECT 5": 5, "INSERT 0 3": 3, "UPDATE 2": 2, "COPY 10": 10, "MERGE 4": 4, "CREATE TABLE": -1, "BEGIN": -1} {
		n, ok := tagRows(tag)
		if (want < 0 && ok) || (want >= 0 && n != want) {
			t.Errorf("%s: %d %v", tag, n, ok)
		}
	}
}

func TestLongPipelineKeepsStateBounded(t *testing.T) {
	s := newPG(t)
	long := "SELECT '" + strings.Repeat("x", 8000) + "'"
	for range 200 {
		s.client(&pgproto3.Parse{Query: long}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	s.client(&pgproto3.Sync{})
	held := 0
	for _, op := range s.pg.Queue {
		if op.Cmd != nil {
			held += len(op.Cmd.Text)
		}
	}
	if held > protocol.DefaultLimits.MaxQueueText+2*16<<10 {
		t.Errorf("%d bytes of text queued", held)
	}
	for range 200 {
		s.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, cc("SELECT 1"))
	}
	s.server(rfqIdle)
	cmds := s.take()
	if len(cmds) != 200 || cmds[0].Text != long || !strings.HasSuffix(cmds[199].Text, "…[truncated]") {
		t.Fatalf("%d commands", len(cmds))
	}
	for _, c := range cmds {
		if c.Status != protocol.StatusOK || c.Rows != 1 {
			t.Fatalf("%+v", c)
		}
	}
}
