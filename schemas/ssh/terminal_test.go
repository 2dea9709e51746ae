package ssh

import (
	"bytes"
	"testing"
)

func TestStripEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"\x1b[1;31mred\x1b[0m":             "red",
		"Password: \x1b]0;title\x07":       "Password: ",
		"a\x1b]8;;http://x\x1b\\link":      "alink",
		"up\x1bOAdown":                     "updown",
		"\x1b(Bplain":                      "plain",
		"\x1b7saved\x1b8":                  "saved",
		"no escapes at all\r\n":            "no escapes at all\r\n",
		"\x1b[?2004hbash$ \x1b[?2004l\r\n": "bash$ \r\n",
	} {
		if got := string(StripEscapes([]byte(in))); got != want {
			t.Errorf("StripEscapes(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzEscapes: the filter fed in pieces (as frames split a stream) keeps exactly
// what it keeps from the whole, and never keeps an ESC.
func FuzzEscapes(f *testing.F) {
	f.Add([]byte("\x1b[1;31mred\x1b[0m"), uint8(3))
	f.Add([]byte("a\x1b]8;;x\x1b\\b\x1bOA"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		whole := StripEscapes(b)
		if bytes.IndexByte(whole, 0x1b) >= 0 {
			t.Fatalf("kept an ESC: %q", whole)
		}
		var e Escapes
		var pieces []byte
		step := int(cut%16) + 1
		for i := 0; i < len(b); i += step {
			for _, c := range b[i:min(i+step, len(b))] {
				if e.Text(c) {
					pieces = append(pieces, c)
				}
			}
		}
		if !bytes.Equal(pieces, whole) {
			t.Fatalf("in pieces %q, whole %q", pieces, whole)
		}
	})
}
