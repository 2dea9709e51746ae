// Package textsafe makes recorded text safe to print on an auditor's terminal.
//
// Recorded SQL, exec commands and metadata come from agents, and a terminal obeys
// control characters in them: `rm -rf /data\r\x1b[2Kuptime` prints as `uptime`. Every
// text output (replays, CLI tables, reports) passes such strings through Line or
// Text, which replace control characters, invalid UTF-8 and bidirectional overrides
// by visible escapes (\r, \x1b, \u202e). The raw terminal stream of an SSH replay
// (asciicast, or played to a terminal) is the exception: it is shown as the
// agent's terminal showed it, on purpose (docs/security.md).
package textsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Line escapes s for a one-line field: every control character, newlines included.
func Line(s string) string { return escape(s, false) }

// Text escapes s for multi-line text (a statement, a command): newlines and tabs stay,
// every other control character is escaped.
func Text(s string) string { return escape(s, true) }

func escape(s string, multiline bool) string {
	if clean(s, multiline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafeRune reports C1 controls and the characters that reorder or hide text:
// bidirectional embeddings, overrides and isolates, and the line/paragraph separators.
func unsafeRune(r rune) bool {
	return r >= 0x80 && r <= 0x9f ||
		r >= 0x202a && r <= 0x202e ||
		r >= 0x2066 && r <= 0x2069 ||
		r == 0x200e || r == 0x200f || r == 0x061c ||
		r == 0x2028 || r == 0x2029
}

// clean reports whether s needs no escaping, without allocating (the common case).
func clean(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return cleanUTF8(s[i:])
		}
		if c == 0x7f || c < 0x20 && !(multiline && (c == '\n' || c == '\t')) {
			return false
		}
	}
	return true
}

func cleanUTF8(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		// Conservative: a newline or tab here sends s through escape, which keeps them
		// in multi-line text.
		if r == utf8.RuneError && size == 1 || r < 0x20 || r == 0x7f || unsafeRune(r) {
			return false
		}
		i += size
	}
	return true
}
