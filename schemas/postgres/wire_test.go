package postgres

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"
)

func TestCheckedBody(t *testing.T) {
	q, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := CheckedBodyOf(q, 'Q')
	if err != nil || string(body) != "select 1\x00" {
		t.Fatalf("whole Query: body %q, err %v", body, err)
	}
	cases := []struct {
		name    string
		payload []byte
		typ     byte
		want    string
	}{
		{"short", q[:4], 'Q', "shorter than its header"},
		{"cut", q[:len(q)-2], 'Q', "length field 13, message holds 11"},
		{"wrong type", q, 'P', `type byte 'Q', expected 'P'`},
		// The type is checked before the length, so a cut message of another kind
		// is reported as the wrong kind.
		{"cut, wrong type", q[:len(q)-2], 'P', `type byte 'Q', expected 'P'`},
	}
	for _, c := range cases {
		if _, err := CheckedBodyOf(c.payload, c.typ); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := CheckedBody(q[:len(q)-2]); err == nil {
		t.Error("CheckedBody took a cut message")
	}
}

func TestBody(t *testing.T) {
	q, _ := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if got := Body(q[:9]); !bytes.Equal(got, []byte("sele")) {
		t.Errorf("cut message: body %q, want what was recorded", got)
	}
	if got := Body(q[:4]); got != nil {
		t.Errorf("short message: body %q, want nil", got)
	}
	if got := Body([]byte{'S', 0, 0, 0, 4}); got == nil || len(got) != 0 {
		t.Errorf("Sync: body %v, want empty", got)
	}
}

func TestFormatCode(t *testing.T) {
	cases := []struct {
		codes []int16
		i     int
		want  int16
	}{
		{nil, 3, 0},        // no codes: all text
		{[]int16{1}, 0, 1}, // one code applies to all
		{[]int16{1}, 5, 1},
		{[]int16{0, 1}, 1, 1}, // one per value
		{[]int16{1, 0}, 1, 0},
		{[]int16{1, 1}, 2, 0}, // more values than codes: text
	}
	for _, c := range cases {
		if got := FormatCode(c.codes, c.i); got != c.want {
			t.Errorf("FormatCode(%v, %d) = %d, want %d", c.codes, c.i, got, c.want)
		}
	}
}

func TestDecodeTurnsPanicsIntoErrors(t *testing.T) {
	// A Bind whose one parameter has length -16: pgproto3 slices with it and panics.
	body := []byte("\x00s\x00\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00")
	func() {
		defer func() {
			if recover() == nil {
				t.Log("pgproto3 no longer panics on this body")
			}
		}()
		_ = (&pgproto3.Bind{}).Decode(body)
	}()
	if err := Decode(&pgproto3.Bind{}, body); err == nil {
		t.Fatal("malformed Bind decoded without error")
	}
}
