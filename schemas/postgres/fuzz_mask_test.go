package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// FuzzMaskSQL: any statement text masks without panic and keeps valid framing; a
// literal compared with a ruled column never survives, whatever its bytes; COPY data
// of any shape keeps its length.
func FuzzMaskSQL(f *testing.F) {
	WarmUp() // before any input: the fuzzer takes an input slower than 10 s for a hang
	for _, s := range []string{
		`INSERT INTO u (password, name) VALUES ('a', 'b'), ($$c$$, E'd\'')`,
		`UPDATE u SET api_key = 'x' WHERE ssn IN ('1', '2')`,
		`COPY u (id, password) FROM STDIN (FORMAT csv)`,
		`SELECT 'é' AS password; SELECT $1`,
		`INSERT INTO u (password VALUES ('x'`,
		`INSERT INTO users VALUES (1, 'bob', 'pw', $1), (2, 'al', $$x$$, $2)`,
		`insert into billing.cards select 1, 'k'`,
		`COPY users FROM STDIN (FORMAT csv)`,
		`COPY logs FROM STDIN`,
	} {
		f.Add(s, []byte("1\tpw\n2\t\"q,\"\n"))
	}
	f.Fuzz(func(t *testing.T, sql string, data []byte) {
		sql = strings.ToValidUTF8(strings.ReplaceAll(sql, "\x00", ""), "?")
		c := &Conversation{}
		out := maskSQLFrame(t, c, sql)
		if _, err := CheckedBodyOf(out, 'Q'); err != nil {
			t.Fatalf("framing lost: %v", err)
		}
		cd := msg(t, &pgproto3.CopyData{Data: data})
		if got := c.Mask(frame(CopyData, schemas.Client, cd), rules, protocol.Counts{}); len(got) != len(cd) {
			t.Fatalf("CopyData changed length")
		}

		// With declared tables: framing and CopyData length hold, and the value a
		// positional INSERT writes to a ruled column is never kept.
		dc := &Conversation{}
		dout := dc.Mask(frame(Query, schemas.Client, msg(t, &pgproto3.Query{String: sql})), declared, protocol.Counts{})
		if _, err := CheckedBodyOf(dout, 'Q'); err != nil {
			t.Fatalf("framing lost (declared): %v", err)
		}
		if got := dc.Mask(frame(CopyData, schemas.Client, cd), declared, protocol.Counts{}); len(got) != len(cd) {
			t.Fatalf("CopyData changed length (declared)")
		}

		if strings.Contains(sql, "masked") {
			return // the masked form itself
		}
		lit := "'" + strings.ReplaceAll(sql, "'", "''") + "'"
		stmt := "SELECT 1 FROM u WHERE password = " + lit
		var q pgproto3.Query
		body, _ := CheckedBodyOf(maskSQLFrame(t, &Conversation{}, stmt), 'Q')
		if err := q.Decode(body); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(q.String, lit) {
			t.Fatalf("literal of a ruled column kept: %q", q.String)
		}
		for _, r := range []protocol.MaskRules{rules, declared} {
			stmt = "INSERT INTO users VALUES (1, 'n', " + lit + ")"
			body, _ = CheckedBodyOf(maskWith(t, r, stmt), 'Q')
			if err := q.Decode(body); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(q.String, ", "+lit+")") { // 'n' may be lit too
				t.Fatalf("positional literal of a ruled column kept: %q", q.String)
			}
		}
	})
}

func maskWith(t *testing.T, r protocol.MaskRules, sql string) []byte {
	return (&Conversation{}).Mask(frame(Query, schemas.Client, msg(t, &pgproto3.Query{String: sql})), r, protocol.Counts{})
}

func maskSQLFrame(t *testing.T, c *Conversation, sql string) []byte {
	return c.Mask(frame(Query, schemas.Client, msg(t, &pgproto3.Query{String: sql})), rules, protocol.Counts{})
}

// The quick test never turns away a statement the expression matches.
func FuzzMayBePositional(f *testing.F) {
	for _, s := range []string{"INSERT INTO t VALUES (1)", "copy t from stdin", "SELECT 1",
		"inſert into t values ('x')", "InSeRt\tinto t select 1", "cop", "insert", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if positionalRe.MatchString(s) && !mayBePositional(s) {
			t.Fatalf("%q matches positionalRe but the quick test said no", s)
		}
	})
}

// The hand scanner finds the identifiers identRe finds, in order.
func FuzzNamesRuledColumn(f *testing.F) {
	for _, s := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = 1;", "x$y 1abc _a9 $1 12e5",
		"select \"Card\"\"No\" from t", "sélect ssn", "a\x00b", "[a]{b}@c`d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !plainSQL(s) {
			return
		}
		var got []string
		eachPlainIdent(s, func(id string) bool { got = append(got, id); return false })
		if want := identRe.FindAllString(s, -1); !slices.Equal(got, want) {
			t.Fatalf("%q: scanner %q, identRe %q", s, got, want)
		}
	})
}
