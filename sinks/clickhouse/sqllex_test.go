package clickhouse

import (
	"strings"
	"testing"
)

func TestCheckAuditorSQL(t *testing.T) {
	allowed := []string{
		"SELECT * FROM table_settings",
		"SELECT name, value FROM system.settings WHERE name = 'readonly'",
		"SELECT 'a;b', \"x;y\", `settings` FROM t",
		"SELECT 1 -- SETTINGS readonly = 0\n",
		"SELECT 1 /* SETTINGS readonly = 0; */",
		"SELECT 'it''s; SETTINGS readonly=0'",
		"SELECT 'a\\' SETTINGS readonly=0'",
		"SELECT $$ SETTINGS readonly = 0; $$",
		"SELECT settings FROM t",
		"SELECT 1;",
		"SELECT 1 ; \n",
	}
	for _, q := range allowed {
		if _, err := checkAuditorSQL(q); err != nil {
			t.Errorf("%q refused: %v", q, err)
		}
	}
	refused := []string{
		"SELECT 1 SETTINGS readonly = 0",
		"SELECT 1 settings max_result_rows=1000000000",
		"SELECT 1 SETTINGS `readonly` = 0",
		"SELECT 1 SETTINGS /* hidden */ readonly -- x\n = 0",
		"SELECT * FROM (SELECT 1 SETTINGS readonly=0)",
		"SELECT $$'$$ SETTINGS readonly=0 --'",
		"SELECT 1; DROP TABLE frames",
		"SELECT '; x' ; SELECT 2",
		"SELECT 'unterminated",
		"SELECT 1 /* unterminated",
		"",
		" ; ",
		// "#" is not taken as a comment: refusing is the safe side of a disagreement.
		"SELECT 1 # SETTINGS readonly = 0",
	}
	for _, q := range refused {
		if _, err := checkAuditorSQL(q); err == nil {
			t.Errorf("%q accepted", q)
		}
	}
	if got, _ := checkAuditorSQL("SELECT 1 ;; \n"); got != "SELECT 1" {
		t.Errorf("trailing semicolons: %q", got)
	}
}

func FuzzCheckAuditorSQL(f *testing.F) {
	for _, s := range []string{"SELECT * FROM table_settings", "SELECT 1 SETTINGS readonly=0", "SELECT $a$ x $a$", "SELECT 'a\\'b'", "SELECT `x``y`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, err := checkAuditorSQL(q)
		if err != nil {
			return
		}
		// Whatever passes holds no SETTINGS clause once strings, identifiers and
		// comments are set aside, and no second statement.
		toks, err := lexSQL(out)
		if err != nil {
			t.Fatalf("accepted %q, whose cut %q does not lex: %v", q, out, err)
		}
		for i, tok := range toks {
			if tok == (sqlToken{'p', ";"}) || settingsClause(toks, i) {
				t.Fatalf("accepted %q with %q", q, tok.text)
			}
		}
		if strings.HasSuffix(out, ";") {
			t.Fatalf("trailing ';' kept: %q", out)
		}
	})
}
