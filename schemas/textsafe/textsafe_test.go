package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHiddenCommandIsShown(t *testing.T) {
	in := "rm -rf /data\r\x1b[2Kuptime"
	for _, got := range []string{Line(in), Text(in)} {
		if got != `rm -rf /data\r\x1b[2Kuptime` {
			t.Errorf("got %q", got)
		}
	}
}

func TestEscapes(t *testing.T) {
	cases := []struct{ in, line, text string }{
		{"SELECT 1", "SELECT 1", "SELECT 1"},
		{"SELECT 1\nFROM t\tx", `SELECT 1\nFROM t\tx`, "SELECT 1\nFROM t\tx"},
		{"a\x00b\x07c\x7f", `a\x00b\x07c\x7f`, `a\x00b\x07c\x7f`},
		{"héllo ✓", "héllo ✓", "héllo ✓"},
		{"bad \xff utf8", `bad \xff utf8`, `bad \xff utf8`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`, `evil\u202egnp.exe`},
		{"c1 \u009b31m", `c1 \u009b31m`, `c1 \u009b31m`},
	}
	for _, c := range cases {
		if got := Line(c.in); got != c.line {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.line)
		}
		if got := Text(c.in); got != c.text {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("rm -rf /data\r\x1b[2Kuptime")
	f.Add("SELECT 1\nFROM t")
	f.Add("\xff\u202e\u009b")
	f.Fuzz(func(t *testing.T, s string) {
		for name, out := range map[string]string{"Line": Line(s), "Text": Text(s)} {
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%q) is not valid UTF-8", name, s)
			}
			for _, r := range out {
				if r < 0x20 && !(name == "Text" && (r == '\n' || r == '\t')) || r == 0x7f || unsafeRune(r) {
					t.Fatalf("%s(%q) = %q keeps %U", name, s, out, r)
				}
			}
		}
		if strings.ContainsAny(s, "\x00\x1b\r") && Line(s) == s {
			t.Fatalf("Line(%q) left control characters", s)
		}
	})
}
