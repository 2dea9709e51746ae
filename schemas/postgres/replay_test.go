package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

type encoder interface{ Encode([]byte) ([]byte, error) }

func wire(m encoder) []byte { return sessiontest.Must(m.Encode(nil)) }

// reflectName is the frame kind of a message: its pgproto3 type name.
func reflectName(m any) string { return reflect.TypeOf(m).Elem().Name() }

// replaySession builds a Postgres session from messages sent in order.
type replaySession struct{ *sessiontest.Builder }

func newReplay() replaySession {
	return replaySession{sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: "https://idp", Subject: "alice", Target: "app", ClientAddr: "127.0.0.1:5000"})}
}

func (s replaySession) c(msgs ...encoder) replaySession {
	for _, m := range msgs {
		s.Step(time.Millisecond).Client(reflectName(m), 0, wire(m))
	}
	return s
}

func (s replaySession) s(msgs ...encoder) replaySession {
	for _, m := range msgs {
		s.Step(time.Millisecond).Server(reflectName(m), 0, wire(m))
	}
	return s
}

func statements(t *testing.T, frames []schemas.Frame, opt protocol.ReplayOptions) []*Statement {
	t.Helper()
	var out []*Statement
	for ev, err := range Events(sessiontest.Seq(frames), opt) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "note" {
			t.Errorf("unexpected note at seq %d: %s", ev.Seq, ev.Message)
		}
		if ev.Type == "statement" {
			out = append(out, ev.Statement)
		}
	}
	return out
}

func textCol(name string, oid uint32) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: oid, DataTypeSize: -1}
}

func strs(p []*string) []string {
	out := make([]string, len(p))
	for i, v := range p {
		out[i] = "NULL"
		if v != nil {
			out[i] = *v
		}
	}
	return out
}

func TestSimpleQueryWithRowLimit(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Query{String: "SELECT id, name FROM users"}).
		s(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("id", oidInt4), textCol("name", oidText)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("ann")}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("3"), []byte("cy")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	sts := statements(t, s.End("client closed").Frames, protocol.ReplayOptions{MaxRows: 2})
	if len(sts) != 1 {
		t.Fatalf("want 1 statement, got %d", len(sts))
	}
	st := sts[0]
	if st.Text != "SELECT id, name FROM users" || st.Protocol != "simple" {
		t.Errorf("statement %q (%s)", st.Text, st.Protocol)
	}
	r := st.Results[0]
	if r.RowCount != 3 || !r.Truncated || len(r.Rows) != 2 || r.Tag != "SELECT 3" {
		t.Fatalf("result: count %d truncated %v rows %d tag %q", r.RowCount, r.Truncated, len(r.Rows), r.Tag)
	}
	if got := strs(r.Rows[1]); got[0] != "2" || got[1] != "NULL" {
		t.Errorf("row 2 = %v", got)
	}
	if r.Columns[0].Name != "id" || r.Columns[0].Type != "int4" {
		t.Errorf("columns %+v", r.Columns)
	}
	// Query at t+1ms, then six server messages 1ms apart: the statement ends at its
	// CommandComplete (the fifth), as its stitched command does, not at ReadyForQuery.
	if st.Duration != 5 {
		t.Errorf("duration %v ms, want 5", st.Duration)
	}
}

func TestMultiStatementQueryGivesOneResultEach(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Query{String: "CREATE TABLE t(a int); INSERT INTO t VALUES (1); SELECT a FROM t"}).
		s(&pgproto3.CommandComplete{CommandTag: []byte("CREATE TABLE")},
			&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("a", oidInt4)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("1")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	st := statements(t, s.Frames, protocol.ReplayOptions{})[0]
	var tags []string
	for _, r := range st.Results {
		tags = append(tags, r.Tag)
	}
	if strings.Join(tags, ",") != "CREATE TABLE,INSERT 0 1,SELECT 1" {
		t.Fatalf("tags %v", tags)
	}
	if len(st.Results[2].Rows) != 1 || *st.Results[2].Rows[0][0] != "1" {
		t.Errorf("third result rows %v", st.Results[2].Rows)
	}
}

func int4(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func TestExtendedProtocolWithBinaryParamsAndResults(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int4 + 1 AS n, $2::text AS who", ParameterOIDs: []uint32{oidInt4, oidText}},
			&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1, 0}, Parameters: [][]byte{int4(41), []byte("bob")}, ResultFormatCodes: []int16{1, 0}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{}).
		s(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("n"), DataTypeOID: oidInt4, Format: 1}, textCol("who", oidText)}},
			&pgproto3.DataRow{Values: [][]byte{int4(42), []byte("bob")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	sts := statements(t, s.Frames, protocol.ReplayOptions{})
	if len(sts) != 1 {
		t.Fatalf("want 1 statement, got %d", len(sts))
	}
	st := sts[0]
	if st.Protocol != "extended" || st.Name != "s1" || !strings.HasPrefix(st.Text, "SELECT $1::int4") {
		t.Errorf("statement %+v", st)
	}
	if got := strs(st.Params); got[0] != "41" || got[1] != "bob" {
		t.Errorf("params %v", got)
	}
	if got := strs(st.Results[0].Rows[0]); got[0] != "42" || got[1] != "bob" {
		t.Errorf("row %v", got)
	}
}

// pgx prepares in one round trip (Parse, Describe S, Sync) and executes in another
// without describing the portal: the columns come from the statement's description.
func TestPreparedStatementDescribedEarlier(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Parse{Name: "stmt_1", Query: "SELECT now()::date AS d"}, &pgproto3.Describe{ObjectType: 'S', Name: "stmt_1"}, &pgproto3.Sync{}).
		s(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("d", oidDate)}},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}).
		c(&pgproto3.Bind{PreparedStatement: "stmt_1", ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{}).
		s(&pgproto3.BindComplete{},
			&pgproto3.DataRow{Values: [][]byte{int4(9556)}}, // 2026-03-01
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	sts := statements(t, s.Frames, protocol.ReplayOptions{})
	if len(sts) != 1 {
		t.Fatalf("want 1 statement (the execute), got %d", len(sts))
	}
	r := sts[0].Results[0]
	if len(r.Columns) != 1 || r.Columns[0].Name != "d" {
		t.Fatalf("columns %+v", r.Columns)
	}
	if got := *r.Rows[0][0]; got != "2026-03-01" {
		t.Errorf("binary date decoded as %q", got)
	}
}

func TestErrorsAttachToTheirStatement(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Query{String: "SELEC 1"}).
		s(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "SELEC"`, Position: 1},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}).
		c(&pgproto3.Parse{Query: "SELECT * FROM missing"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}).
		s(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: `relation "missing" does not exist`},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}).
		c(&pgproto3.Query{String: "SELECT 1"}).
		s(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("?column?", oidInt4)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("1")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	sts := statements(t, s.Frames, protocol.ReplayOptions{})
	if len(sts) != 3 {
		t.Fatalf("want 3 statements, got %d", len(sts))
	}
	if sts[0].Error == nil || sts[0].Error.Code != "42601" {
		t.Errorf("first statement error %+v", sts[0].Error)
	}
	if sts[1].Text != "SELECT * FROM missing" || sts[1].Error == nil || sts[1].Error.Code != "42P01" {
		t.Errorf("second statement %q error %+v", sts[1].Text, sts[1].Error)
	}
	if sts[2].Error != nil || sts[2].Results[0].Tag != "SELECT 1" {
		t.Errorf("third statement %+v", sts[2])
	}
}

func TestFragmentedDataRowReassembles(t *testing.T) {
	big := strings.Repeat("x", 5000)
	b := newReplay()
	b.c(&pgproto3.Query{String: "SELECT big FROM blobs"}).
		s(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("big", oidText)}})
	b.FragmentBytes = 1024
	b.s(&pgproto3.DataRow{Values: [][]byte{[]byte(big)}})
	b.FragmentBytes = 0
	b.s(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	frags := 0
	for _, f := range b.Frames {
		if f.Kind == "DataRow" {
			frags++
		}
	}
	if frags < 5 {
		t.Fatalf("DataRow split into %d frames; the test needs fragments", frags)
	}
	st := statements(t, b.Frames, protocol.ReplayOptions{MaxCellBytes: 10000})[0]
	if got := *st.Results[0].Rows[0][0]; got != big {
		t.Fatalf("reassembled value has %d bytes, want %d", len(got), len(big))
	}
}

func TestCellsAreCutAtTheLimit(t *testing.T) {
	s := newReplay().
		c(&pgproto3.Query{String: "SELECT doc"}).
		s(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("doc", oidText)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte(strings.Repeat("é", 100))}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{})
	v := *statements(t, s.Frames, protocol.ReplayOptions{MaxCellBytes: 11})[0].Results[0].Rows[0][0]
	if v != strings.Repeat("é", 5)+"… (200 bytes)" {
		t.Errorf("cut value %q", v)
	}
}

func TestTranscriptTextAndJSON(t *testing.T) {
	s := newReplay().
		c(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "alice", "database": "app"}}).
		s(&pgproto3.AuthenticationCleartextPassword{}).
		c(&pgproto3.PasswordMessage{Password: "eyJsecret.token.value"}).
		s(&pgproto3.AuthenticationOk{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}).
		c(&pgproto3.Query{String: "SELECT id, name FROM users"}).
		s(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textCol("id", oidInt4), textCol("name", oidText)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("ann")}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("22"), []byte("bo")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}).
		c(&pgproto3.Terminate{})
	s.End("client closed")

	var text bytes.Buffer
	if err := (Protocol{}).Replay(&text, FormatText, sessiontest.Seq(s.Frames), protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		"session by alice (https://idp) on target app",
		"startup: database=app user=alice",
		"SELECT id, name FROM users\n id | name\n----+------\n 1  | ann \n 22 | bo  \n(2 rows)\nSELECT 2\n",
		"session ended: client closed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("transcript lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "eyJsecret") {
		t.Error("transcript shows the password message")
	}

	var js bytes.Buffer
	if err := (Protocol{}).Replay(&js, FormatJSON, sessiontest.Seq(s.Frames), protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, ","); got != "session.start,startup,authenticated,statement,terminate,session.end" {
		t.Errorf("event types %s", got)
	}
}

func TestStatementWithoutResponseIsReportedAtTheEnd(t *testing.T) {
	s := newReplay().c(&pgproto3.Query{String: "SELECT pg_sleep(100)"})
	sts := statements(t, s.Frames, protocol.ReplayOptions{})
	if len(sts) != 1 || !sts[0].End.IsZero() || len(sts[0].Notices) == 0 {
		t.Fatalf("pending statement %+v", sts)
	}
}

func TestStopsEarlyWithoutReadingEverything(t *testing.T) {
	s := newReplay()
	for range 50 {
		s.c(&pgproto3.Query{String: "SELECT 1"}).s(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{})
	}
	read := 0
	frames := func(yield func(schemas.Frame, error) bool) {
		for _, f := range s.Frames {
			read++
			if !yield(f, nil) {
				return
			}
		}
	}
	for ev := range Events(frames, protocol.ReplayOptions{}) {
		if ev.Type == "statement" {
			break
		}
	}
	if read > 5 {
		t.Errorf("first statement needed %d frames read", read)
	}
}
