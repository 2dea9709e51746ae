package chdb

import (
	"reflect"
	"strconv"
	"testing"
)

// Results come from the embedded engine, but a corrupt or hostile table could
// still hand the decoder anything: it must fail cleanly, never panic or over-read.
func FuzzDecodeRowBinary(f *testing.F) {
	// Two columns (UInt8 "a", String "b") and one row, as the engine writes them.
	f.Add([]byte("\x02\x01a\x01b\x05UInt8\x06String\x07\x03xyz"))
	f.Add([]byte("\x01\x01m\x13Map(String, UInt64)\x01\x01k\x2a\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x01\x01n\x10Nullable(Int32)\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tbl, err := DecodeRowBinary(b)
		if err != nil {
			return
		}
		for _, row := range tbl.Rows {
			if len(row) != len(tbl.Columns) {
				t.Fatalf("row of %d values for %d columns", len(row), len(tbl.Columns))
			}
		}
	})
}

// The frames decoder takes the same bytes: it must fail cleanly on anything, and
// where both decoders accept a result of the frame columns, give the same frames.
func FuzzDecodeFrames(f *testing.F) {
	fs := sampleFrames()
	fs[3].Payload = fs[3].Payload[:100]
	f.Add(frameRowsRB(f, fs))
	f.Add(frameRowsRB(f, fs[:1]))
	f.Add(frameRowsRB(f, nil))
	f.Add([]byte("\x02\x01a\x01b\x05UInt8\x06String\x07\x03xyz"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeFrames(b, 16)
		if err != nil {
			return
		}
		want, err := genericFrames(b)
		if err != nil {
			return // columns in another order, or fewer: the generic scan takes them by position
		}
		if (len(got) > 0 || len(want) > 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("frames decoder: %+v\ngeneric: %+v", got, want)
		}
	})
}

// A quoted literal must be one string token that means exactly s: whatever an agent
// recorded cannot close the literal and continue the statement.
func FuzzQuote(f *testing.F) {
	f.Add("it's")
	f.Add("a\\'); DROP TABLE frames; --")
	f.Add("\x00\x1f\x7f\n\t")
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		got, rest, ok := readLiteral(q)
		if !ok || rest != "" || got != s {
			t.Fatalf("Quote(%q) = %s reads back as %q (rest %q, ok %v)", s, q, got, rest, ok)
		}
	})
}

// readLiteral reads a ClickHouse string literal the way the engine does for the escapes
// Quote writes (\\, \', \xHH), returning the value and the text after it.
func readLiteral(q string) (string, string, bool) {
	if len(q) < 2 || q[0] != '\'' {
		return "", "", false
	}
	var b []byte
	for i := 1; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\'':
			return string(b), q[i+1:], true
		case c == '\\' && i+1 < len(q) && q[i+1] == 'x' && i+3 < len(q):
			v, err := strconv.ParseUint(q[i+2:i+4], 16, 8)
			if err != nil {
				return "", "", false
			}
			b = append(b, byte(v))
			i += 3
		case c == '\\' && i+1 < len(q):
			b = append(b, q[i+1])
			i++
		default:
			b = append(b, c)
		}
	}
	return "", "", false
}
