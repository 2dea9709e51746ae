package clickhouse

import (
	"strings"
	"testing"
)

func TestInlineParams(t *testing.T) {
	got, err := inlineParams("SELECT x FROM t WHERE a = {a:String} AND n >= {n:Int64} AND (t, b) < ({t:DateTime64(6, 'UTC')}, {b:String}) LIMIT {l:UInt32}",
		Params{"a": "o'b\\r\x00\n", "n": "-3", "t": "2024-01-02 03:04:05.000006", "b": "{a:String}", "l": "10"})
	if err != nil {
		t.Fatal(err)
	}
	want := `SELECT x FROM t WHERE a = 'o\'b\\r\0\n' AND n >= -3 AND (t, b) < (CAST('2024-01-02 03:04:05.000006' AS DateTime64(6, 'UTC')), '{a:String}') LIMIT 10`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []Params{{"l": "10 OR 1=1"}, {"l": "-1"}, {}} {
		if _, err := inlineParams("LIMIT {l:UInt32}", bad); err == nil {
			t.Errorf("params %v: no error", bad)
		}
	}
}

// FuzzQuote: any value becomes one string literal, whose unescaped body is the value.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "'", `\`, "a'b\\'c", "\x00\n\r\t", "}{x:String}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		toks, err := lexSQL("SELECT " + quote(v))
		if err != nil || len(toks) != 2 || toks[1].kind != 's' {
			t.Fatalf("quote(%q) = %s: tokens %v, err %v", v, quote(v), toks, err)
		}
		// The lexer keeps the escaped byte itself (\n as n): map v alike.
		want := strings.NewReplacer("\x00", "0", "\n", "n", "\r", "r", "\t", "t").Replace(v)
		if toks[1].text != want {
			t.Fatalf("quote(%q) = %s reads back as %q", v, quote(v), toks[1].text)
		}
	})
}
