package ssh

// Escapes is the terminal text filter: it tells the text of a terminal stream from
// its escape sequences, byte by byte, keeping its state between calls (a sequence
// may be split across frames). Masking (to find a password prompt in the output),
// stitching (to rebuild a typed line) and replay (to print a terminal as text) all
// filter with it. The zero value is outside any sequence. Its values are saved with
// the processors' state, so they never change meaning.
type Escapes int

const (
	EscText   Escapes = iota // not in a sequence
	EscStart                 // after ESC
	EscCSI                   // ESC [ ... up to a final byte 0x40-0x7E
	EscSS3                   // ESC O and one more byte (keypad and function keys)
	EscString                // OSC, DCS, PM, APC: up to BEL or ESC \
	EscStrEsc                // ESC inside a string: the byte after it ends the string
	EscInter                 // ESC and intermediate bytes 0x20-0x2F, up to a final byte
)

// Text feeds one byte and reports whether it is text; ESC itself and every byte of
// a sequence are not.
func (e *Escapes) Text(c byte) bool {
	switch *e {
	case EscStart:
		*e = escNext(c)
		return false
	case EscCSI:
		if c >= 0x40 && c <= 0x7E {
			*e = EscText
		}
		return false
	case EscSS3, EscStrEsc:
		*e = EscText
		return false
	case EscString:
		switch c {
		case 0x07:
			*e = EscText
		case 0x1B:
			*e = EscStrEsc
		}
		return false
	case EscInter:
		if c >= 0x30 && c <= 0x7E {
			*e = EscText
		}
		return false
	}
	if c == 0x1B {
		*e = EscStart
		return false
	}
	return true
}

func escNext(c byte) Escapes {
	switch {
	case c == '[':
		return EscCSI
	case c == 'O':
		return EscSS3
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return EscString
	case c >= 0x20 && c <= 0x2F:
		return EscInter
	}
	return EscText
}

// StripEscapes returns b's text without its escape sequences.
func StripEscapes(b []byte) []byte {
	var e Escapes
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if e.Text(c) {
			out = append(out, c)
		}
	}
	return out
}
