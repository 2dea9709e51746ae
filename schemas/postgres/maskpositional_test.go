package postgres

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// declaredRules are rules that declare the column order of public.users and
// billing.cards, resolved as processors/mask resolves them (unqualified: public).
type declaredRules struct{ testRules }

func (declaredRules) TableColumns(schema, table string) ([]string, bool) {
	if schema == "" {
		schema = "public"
	}
	cols, ok := map[string][]string{
		"public.users":  {"id", "name", "password", "note"},
		"billing.cards": {"id", "api_key"},
	}[schema+"."+table]
	return cols, ok
}

var declared = declaredRules{rules}

func TestPositionalInsertByDeclaredColumns(t *testing.T) {
	for _, tc := range []struct {
		name, sql, want string
		counts          protocol.Counts
	}{
		{"declared", `INSERT INTO users VALUES (1, 'bob', 'hunter2', 'hi'), (2, 'al', $$pw$$, 'x')`,
			`INSERT INTO users VALUES (1, 'bob', '[masked:column]', 'hi'), (2, 'al', $$[masked:column]$$, 'x')`,
			protocol.Counts{MaskColumn: 2}},
		{"schema public", `insert into public.users values (1, 'bob', 'hunter2')`,
			`insert into public.users values (1, 'bob', '[masked:column]')`, protocol.Counts{MaskColumn: 1}},
		{"qualified", `INSERT INTO billing.cards VALUES (7, 'k-123')`,
			`INSERT INTO billing.cards VALUES (7, '[masked:column]')`, protocol.Counts{MaskColumn: 1}},
		{"other schema is another table", `INSERT INTO other.users VALUES (1, 'bob')`,
			`INSERT INTO other.users VALUES ('[masked:positional]', '[masked:positional]')`, protocol.Counts{MaskPositional: 2}},
		{"past the declared columns", `INSERT INTO billing.cards VALUES (7, 'k', 'extra')`,
			`INSERT INTO billing.cards VALUES (7, '[masked:column]', '[masked:positional]')`,
			protocol.Counts{MaskColumn: 1, MaskPositional: 1}},
		{"undeclared", `INSERT INTO logs VALUES (1, 'bob@example.com', now())`,
			`INSERT INTO logs VALUES ('[masked:positional]', '[masked:positional]', now())`, protocol.Counts{MaskPositional: 2}},
		{"insert select", `INSERT INTO users SELECT 1, 'bob', 'hunter2'`,
			`INSERT INTO users SELECT 1, 'bob', '[masked:column]'`, protocol.Counts{MaskColumn: 1}},
		{"column list wins", `INSERT INTO users (password, id) VALUES ('pw', 1)`,
			`INSERT INTO users (password, id) VALUES ('[masked:column]', 1)`, protocol.Counts{MaskColumn: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, counts := maskQueryWith(t, &Conversation{}, declared, tc.sql)
			if got != tc.want || !reflect.DeepEqual(counts, tc.counts) {
				t.Errorf("got  %s %v\nwant %s %v", got, counts, tc.want, tc.counts)
			}
		})
	}
}

// Rules that declare no tables (a protocol.MaskRules without TableColumns) mask
// every value bound by position.
func TestPositionalInsertWithoutDeclarations(t *testing.T) {
	got, counts := maskQueryWith(t, &Conversation{}, rules, `INSERT INTO users VALUES (1, 'x')`)
	if want := `INSERT INTO users VALUES ('[masked:positional]', '[masked:positional]')`; got != want || counts[MaskPositional] != 2 {
		t.Errorf("got %s %v", got, counts)
	}
}

func bindWith(t *testing.T, r protocol.MaskRules, sql string, params ...string) ([]string, protocol.Counts) {
	t.Helper()
	c := &Conversation{}
	c.Stitch(frame(Parse, schemas.Client, msg(t, &pgproto3.Parse{Name: "s", Query: sql})), protocol.Limits{})
	b := &pgproto3.Bind{PreparedStatement: "s"}
	for _, p := range params {
		b.Parameters = append(b.Parameters, []byte(p))
	}
	counts := protocol.Counts{}
	out := c.Mask(frame(Bind, schemas.Client, msg(t, b)), r, counts)
	body, err := CheckedBodyOf(out, 'B')
	if err != nil {
		t.Fatal(err)
	}
	var got pgproto3.Bind
	if err := got.Decode(body); err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, p := range got.Parameters {
		vals = append(vals, string(p))
	}
	return vals, counts
}

func TestPositionalPreparedInsert(t *testing.T) {
	got, counts := bindWith(t, declared, `INSERT INTO users VALUES ($1, $2, $3, $4)`, "1", "bob", "hunter2", "hi")
	if want := []string{"1", "bob", "[masked:param]", "hi"}; !reflect.DeepEqual(got, want) || counts[MaskParam] != 1 {
		t.Errorf("declared: %q %v", got, counts)
	}
	got, counts = bindWith(t, declared, `INSERT INTO logs VALUES ($1, $2)`, "1", "x")
	if want := []string{"[masked:positional]", "[masked:positional]"}; !reflect.DeepEqual(got, want) || counts[MaskPositional] != 2 {
		t.Errorf("undeclared: %q %v", got, counts)
	}
	// Parameters out of order still follow the position they fill.
	got, _ = bindWith(t, declared, `INSERT INTO users VALUES ($4, $3, $1, $2)`, "pw", "note", "bob", "1")
	if want := []string{"[masked:param]", "note", "bob", "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("reordered: %q", got)
	}
}

func TestPositionalCopy(t *testing.T) {
	got, counts := copyRowsWith(t, declared, `COPY users FROM STDIN`, "1\tbob\thunter2\thi\n2\tal\tpw", "2\tx\n")
	if want := "1\tbob\t*******\thi\n2\tal\t***\tx\n"; got != want || counts[MaskColumn] != 3 {
		t.Errorf("text: %q %v", got, counts)
	}
	got, counts = copyRowsWith(t, declared, `COPY public.users FROM STDIN (FORMAT csv)`, "1,bob,\"a,b\",hi\n")
	if want := "1,bob,*****,hi\n"; got != want || counts[MaskColumn] != 1 {
		t.Errorf("csv: %q %v", got, counts)
	}
	got, counts = copyRowsWith(t, declared, `COPY logs FROM STDIN`, "1\tbob\n")
	if want := "*\t***\n"; got != want || counts[MaskPositional] != 2 {
		t.Errorf("undeclared: %q %v", got, counts)
	}
	got, _ = copyRowsWith(t, declared, `COPY billing.cards FROM STDIN`, "1\tk\textra\n")
	if want := "1\t*\t*****\n"; got != want {
		t.Errorf("past declared: %q", got)
	}
}

// Binary COPY without a column list: the declared order picks the field.
func TestPositionalCopyBinary(t *testing.T) {
	var data []byte
	data = append(data, "PGCOPY\n\xff\r\n\x00"...)
	data = append(data, 0, 0, 0, 0, 0, 0, 0, 0)
	data = append(data, 0, 2)
	data = append(data, 0, 0, 0, 4, 0, 0, 0, 9)
	data = append(data, 0, 0, 0, 5)
	data = append(data, "k-123"...)
	data = append(data, 0xff, 0xff)
	got, counts := copyRowsWith(t, declared, `COPY billing.cards FROM STDIN (FORMAT binary)`, string(data[:25]), string(data[25:]))
	if want := strings.Replace(string(data), "k-123", "*****", 1); got != want || counts[MaskColumn] != 1 {
		t.Errorf("got %q %v", got, counts)
	}
}
