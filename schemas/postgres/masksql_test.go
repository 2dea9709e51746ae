package postgres

import (
	"bytes"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// testRules rules the columns matching its globs and masks "bob@example.com" as an
// email (standing in for the detectors).
type testRules []string

func (r testRules) Text(b []byte, st protocol.Style, counts protocol.Counts) []byte {
	const email = "bob@example.com"
	if !bytes.Contains(b, []byte(email)) {
		return b
	}
	counts.Add("email", int64(bytes.Count(b, []byte(email))))
	rep := Token("email")
	if st == protocol.SameLength {
		rep = strings.Repeat("*", len(email))
	}
	return bytes.ReplaceAll(b, []byte(email), []byte(rep))
}

func (r testRules) Column(name string) bool {
	for _, g := range r {
		if ok, _ := path.Match(g, strings.ToLower(name)); ok {
			return true
		}
	}
	return false
}
func (testRules) Param(int) bool        { return false }
func (testRules) Header(string) bool    { return false }
func (testRules) JSONField(string) bool { return false }

var rules = testRules{"*password*", "api_key", "ssn"}

func msg(t testing.TB, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func frame(kind string, dir schemas.Direction, p []byte) *schemas.Frame {
	return &schemas.Frame{Protocol: schemas.Postgres, Kind: kind, Direction: dir, Payload: p, Final: true}
}

// maskQuery masks one simple Query with the default rules and returns its text
// and counts.
func maskQuery(t *testing.T, c *Conversation, sql string) (string, protocol.Counts) {
	t.Helper()
	return maskQueryWith(t, c, rules, sql)
}

func maskQueryWith(t *testing.T, c *Conversation, r protocol.MaskRules, sql string) (string, protocol.Counts) {
	t.Helper()
	counts := protocol.Counts{}
	out := c.Mask(frame(Query, schemas.Client, msg(t, &pgproto3.Query{String: sql})), r, counts)
	body, err := CheckedBodyOf(out, 'Q')
	if err != nil {
		t.Fatalf("framing: %v", err)
	}
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		t.Fatal(err)
	}
	return q.String, counts
}

func TestStatementLiteralsOfRuledColumns(t *testing.T) {
	for _, tc := range []struct{ name, sql, want string }{
		{"insert", `INSERT INTO users (name, password, ssn) VALUES ('bob', 'hunter2', '123-45-6789')`,
			`INSERT INTO users (name, password, ssn) VALUES ('bob', '[masked:column]', '[masked:column]')`},
		{"insert multi-row", `insert into users (password, name) values ('p1', 'a'), (E'p\'2', 'b'), ($$p3$$, 'c')`,
			`insert into users (password, name) values ('[masked:column]', 'a'), ('[masked:column]', 'b'), ($$[masked:column]$$, 'c')`},
		{"insert cast and number", `INSERT INTO t ("API_KEY", ssn) VALUES ('k'::text, 123456789)`,
			`INSERT INTO t ("API_KEY", ssn) VALUES ('[masked:column]'::text, '[masked:column]')`},
		{"update", `UPDATE accounts SET api_key = 'sk-1', note = 'x' WHERE id = 7`,
			`UPDATE accounts SET api_key = '[masked:column]', note = 'x' WHERE id = 7`},
		{"where", `SELECT id FROM users WHERE users.password = 'hunter2' AND 'x' = name OR 'y' = ssn`,
			`SELECT id FROM users WHERE users.password = '[masked:column]' AND 'x' = name OR '[masked:column]' = ssn`},
		{"in", `DELETE FROM users WHERE ssn IN ('1', '2') AND id IN (1, 2)`,
			`DELETE FROM users WHERE ssn IN ('[masked:column]', '[masked:column]') AND id IN (1, 2)`},
		{"like in subquery", `SELECT * FROM a WHERE id IN (SELECT id FROM b WHERE password LIKE 'hun%')`,
			`SELECT * FROM a WHERE id IN (SELECT id FROM b WHERE password LIKE '[masked:column]')`},
		{"upsert", `INSERT INTO u (id, password) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET password = 'b'`,
			`INSERT INTO u (id, password) VALUES (1, '[masked:column]') ON CONFLICT (id) DO UPDATE SET password = '[masked:column]'`},
		{"alias", `SELECT 'hunter2' AS password, 'bob@example.com' AS contact`,
			`SELECT '[masked:column]' AS password, '[masked:email]' AS contact`},
		{"two statements", `INSERT INTO u (password) VALUES ('a'); UPDATE u SET password = 'b'`,
			`INSERT INTO u (password) VALUES ('[masked:column]'); UPDATE u SET password = '[masked:column]'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, counts := maskQuery(t, &Conversation{}, tc.sql)
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if n := int64(strings.Count(tc.want, "[masked:column]")); counts[MaskColumn] != n {
				t.Errorf("counts %v, want %d column", counts, n)
			}
		})
	}
}

func TestStatementsWithoutRuledColumnsAreNotParsed(t *testing.T) {
	got, counts := maskQuery(t, &Conversation{}, `INSERT INTO t (a) VALUES ('bob@example.com'`)
	if got != `INSERT INTO t (a) VALUES ('[masked:email]'` || counts[MaskUnparsed] != 0 {
		t.Errorf("%s %v", got, counts)
	}
}

func TestUnparsedStatementFallsBackToDetectors(t *testing.T) {
	got, counts := maskQuery(t, &Conversation{}, `INSERT INTO t (password VALUES ('hunter2', 'bob@example.com')`)
	if got != `INSERT INTO t (password VALUES ('hunter2', '[masked:email]')` || counts[MaskUnparsed] != 1 || counts["email"] != 1 {
		t.Errorf("%s %v", got, counts)
	}
}

func TestParamColumns(t *testing.T) {
	got := ParamColumns(`SELECT * FROM u WHERE u."email" = $2 AND name LIKE $1; INSERT INTO t(a, "B", c) VALUES ($3, 'x', $4)`)
	want := map[int]string{1: "email", 0: "name", 2: "a", 3: "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	got = ParamColumns(`insert into t (a, b) values ($1, $2), ($3, $4) on conflict (a) do update set b = $5`)
	if !reflect.DeepEqual(got, map[int]string{0: "a", 1: "b", 2: "a", 3: "b", 4: "b"}) {
		t.Errorf("insert: %v", got)
	}
	got = ParamColumns(`update t set api_key = $1::text where ssn in ($2, $3)`)
	if !reflect.DeepEqual(got, map[int]string{0: "api_key", 1: "ssn", 2: "ssn"}) {
		t.Errorf("update: %v", got)
	}
	// Not SQL: the patterns still read what they can.
	got = ParamColumns(`insert into t (a, b) values ($1, $2) garbage (`)
	if !reflect.DeepEqual(got, map[int]string{0: "a", 1: "b"}) {
		t.Errorf("unparsed: %v", got)
	}
}

// A prepared statement's parameters are masked by the columns its text binds them
// to, for the Bind that names it.
func TestBindParametersOfPreparedStatement(t *testing.T) {
	c := &Conversation{}
	parse := frame(Parse, schemas.Client, msg(t, &pgproto3.Parse{Name: "s1", Query: `UPDATE u SET password = $2 WHERE name = $1 AND ssn IN ($3, $4)`}))
	c.Stitch(parse, protocol.Limits{})
	counts := protocol.Counts{}
	bind := frame(Bind, schemas.Client, msg(t, &pgproto3.Bind{PreparedStatement: "s1",
		Parameters: [][]byte{[]byte("bob"), []byte("hunter2"), []byte("111"), []byte("222")}}))
	out := c.Mask(bind, rules, counts)
	var b pgproto3.Bind
	body, _ := CheckedBodyOf(out, 'B')
	if err := b.Decode(body); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte("bob"), []byte("[masked:param]"), []byte("[masked:param]"), []byte("[masked:param]")}
	if !reflect.DeepEqual(b.Parameters, want) || counts[MaskParam] != 3 {
		t.Errorf("params %q counts %v", b.Parameters, counts)
	}
}

// copyRows sends a COPY FROM STDIN and its data (as the given CopyData pieces) and
// returns the masked data and counts.
func copyRows(t *testing.T, sql string, pieces ...string) (string, protocol.Counts) {
	t.Helper()
	return copyRowsWith(t, rules, sql, pieces...)
}

// copyRowsWith masks a COPY FROM STDIN statement, its data in the given pieces
// (one CopyData each) and CopyDone, and returns the masked data and counts.
func copyRowsWith(t *testing.T, r protocol.MaskRules, sql string, pieces ...string) (string, protocol.Counts) {
	t.Helper()
	c := &Conversation{}
	maskQueryWith(t, c, r, sql)
	counts := protocol.Counts{}
	var data []byte
	for _, p := range pieces {
		out := c.Mask(frame(CopyData, schemas.Client, msg(t, &pgproto3.CopyData{Data: []byte(p)})), r, counts)
		body, err := CheckedBodyOf(out, 'd')
		if err != nil || len(out) != 5+len(p) {
			t.Fatalf("framing: %v", err)
		}
		data = append(data, body...)
	}
	c.Mask(frame(CopyDone, schemas.Client, msg(t, &pgproto3.CopyDone{})), r, counts)
	if c.Copy != nil {
		t.Error("COPY state kept after CopyDone")
	}
	return string(data), counts
}

func TestCopyFromStdinRuledColumns(t *testing.T) {
	got, counts := copyRows(t, `COPY users (name, password, note) FROM STDIN`,
		"bob\thunter2\tbob@example.com\n", "carol\tp\\\tw", "d\tx\n")
	// The second password is split across two messages: it counts in each.
	if want := "bob\t*******\t***************\ncarol\t*****\tx\n"; got != want || counts[MaskColumn] != 3 {
		t.Errorf("got %q %v", got, counts)
	}
	got, counts = copyRows(t, `COPY users (password, name) FROM STDIN WITH (FORMAT csv)`, "\"a,b\",bob\nsecret,carol\n")
	if want := "*****,bob\n******,carol\n"; got != want || counts[MaskColumn] != 2 {
		t.Errorf("csv: got %q %v", got, counts)
	}
	got, counts = copyRows(t, `COPY users (name) FROM STDIN`, "hunter2\n")
	if got != "hunter2\n" || counts[MaskColumn] != 0 {
		t.Errorf("unruled: got %q %v", got, counts)
	}
}

// A large COPY data message arrives in fragments; its fields are masked across them.
func TestCopyDataFragments(t *testing.T) {
	c := &Conversation{}
	maskQuery(t, c, `COPY users (id, password) FROM STDIN`)
	whole := msg(t, &pgproto3.CopyData{Data: []byte("1\t" + strings.Repeat("s", 100) + "\n2\tpw\n")})
	var joined []byte
	counts := protocol.Counts{}
	for i, part := range [][]byte{whole[:3], whole[3:60], whole[60:]} {
		f := frame(CopyData, schemas.Client, append([]byte(nil), part...))
		f.Fragment, f.Final = int32(i), i == 2
		out := c.Mask(f, rules, counts)
		if len(out) != len(part) {
			t.Fatalf("fragment %d changed length", i)
		}
		joined = append(joined, out...)
	}
	if want := "1\t" + strings.Repeat("*", 100) + "\n2\t**\n"; string(joined[5:]) != want {
		t.Errorf("got %q", joined[5:])
	}
}

// Binary COPY (pgx's CopyFrom): fields are length-prefixed, so a ruled one is masked
// whatever its type, across message boundaries.
func TestCopyBinaryRuledColumn(t *testing.T) {
	var data []byte
	data = append(data, "PGCOPY\n\xff\r\n\x00"...)
	data = append(data, 0, 0, 0, 0, 0, 0, 0, 0) // flags, no extension
	row := func(id byte, pw string) {
		data = append(data, 0, 3)
		data = append(data, 0, 0, 0, 4, 0, 0, 0, id)
		data = append(data, 0, 0, 0, byte(len(pw)))
		data = append(data, pw...)
		data = append(data, 0xff, 0xff, 0xff, 0xff) // NULL
	}
	row(1, "hunter2")
	row(2, "s3cr3t-pw")
	data = append(data, 0xff, 0xff)
	got, counts := copyRows(t, `COPY users (id, password, note) FROM STDIN (FORMAT binary)`,
		string(data[:20]), string(data[20:40]), string(data[40:]))
	want := strings.NewReplacer("hunter2", "*******", "s3cr3t-pw", "*********").Replace(string(data))
	if got != want || counts[MaskColumn] != 2 {
		t.Errorf("got %q %v", got, counts)
	}
}

// A value that is not UTF-8 text (a bytea in binary format, Latin-1 text) goes
// through the detectors too, keeping its length; UTF-8 text keeps the target's
// style.
func TestBinaryValuesGoThroughDetectors(t *testing.T) {
	bin := []byte("\x00\x01\xff\xfeconfig: bob@example.com\n\xc3\xff")
	txt := []byte("contact bob@example.com")
	check := func(name string, got, orig []byte, sameLength bool) {
		t.Helper()
		if bytes.Contains(got, []byte("bob@example.com")) {
			t.Errorf("%s: secret kept in %q", name, got)
		}
		if sameLength && len(got) != len(orig) {
			t.Errorf("%s: length %d → %d", name, len(orig), len(got))
		}
	}

	c := &Conversation{}
	c.Cols = []string{"id", "blob", "note"}
	row := frame(DataRow, schemas.Server, msg(t, &pgproto3.DataRow{Values: [][]byte{[]byte("1"), bin, txt}}))
	out := &pgproto3.DataRow{}
	if err := out.Decode(c.Mask(row, rules, protocol.Counts{})[5:]); err != nil {
		t.Fatal(err)
	}
	check("DataRow binary value", out.Values[1], bin, true)
	check("DataRow text value", out.Values[2], txt, false)
	if !bytes.Contains(out.Values[2], []byte(Token("email"))) {
		t.Errorf("DataRow text value: want the token style, got %q", out.Values[2])
	}

	b := &Conversation{}
	b.Stmts = map[string]*pgStmt{"s": {Text: "select $1, $2"}}
	bind := frame(Bind, schemas.Client, msg(t, &pgproto3.Bind{PreparedStatement: "s",
		ParameterFormatCodes: []int16{1, 0}, Parameters: [][]byte{bin, txt}}))
	ob := &pgproto3.Bind{}
	if err := ob.Decode(b.Mask(bind, rules, protocol.Counts{})[5:]); err != nil {
		t.Fatal(err)
	}
	check("Bind binary-format parameter", ob.Parameters[0], bin, true)
	check("Bind text parameter", ob.Parameters[1], txt, false)
}
