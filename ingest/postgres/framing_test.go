package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"
)

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func TestMsgReaderReadsWholeMessages(t *testing.T) {
	q := encode(&pgproto3.Query{String: "select 1"})
	p := encode(&pgproto3.Parse{Name: "s1", Query: "select $1::int"})
	x := encode(&pgproto3.Terminate{})
	r := newMsgReader(bufio.NewReader(bytes.NewReader(bytes.Join([][]byte{q, p, x}, nil))), 1024, clientTypes)
	for _, want := range [][]byte{q, p, x} {
		typ, got, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if typ != want[0] || !bytes.Equal(got, want) {
			t.Fatalf("got %q (%c), want %q", got, typ, want)
		}
	}
	if _, _, err := r.next(); err != io.EOF {
		t.Fatalf("after the last message: %v, want io.EOF", err)
	}
}

func TestMsgReaderRejectsHostileFraming(t *testing.T) {
	huge := []byte{'Q', 0x7f, 0xff, 0xff, 0xff}
	negative := []byte{'Q', 0xff, 0xff, 0xff, 0xf0}
	for _, tc := range []struct {
		name, in, want string
		oversized      bool
	}{
		{"length over the limit", string(msg('Q', strings.Repeat("x", 200))), "exceeds the limit of 100 bytes", true},
		{"2 GiB announced", string(huge), "exceeds the limit", true},
		{"negative length", string(negative), "invalid length", false},
		{"length below 4", string([]byte{'Q', 0, 0, 0, 3}), "invalid length 3", false},
		{"unknown type", string(msg('@', "x")), `unexpected message type "@"`, false},
		{"password after login", string(msg('p', "secret\x00")), `unexpected message type "p"`, false},
		{"truncated body", string(msg('Q', "select 1")[:9]), "truncated", false},
		{"truncated header", "Q\x00\x00", "truncated", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newMsgReader(bufio.NewReader(strings.NewReader(tc.in)), 100, clientTypes)
			_, _, err := r.next()
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a ProtocolError", err)
			}
			if !strings.Contains(err.Error(), tc.want) || pe.Oversized != tc.oversized {
				t.Fatalf("got %q (oversized=%v), want it to mention %q (oversized=%v)", err, pe.Oversized, tc.want, tc.oversized)
			}
		})
	}
}

// A peer announcing a large message and sending little must not make the reader
// allocate what it announced.
func TestMsgReaderAllocatesWhatArrives(t *testing.T) {
	in := append([]byte{'d', 0, 0, 0, 0}, "only a little"...)
	binary.BigEndian.PutUint32(in[1:], 60<<20)
	r := newMsgReader(bufio.NewReader(bytes.NewReader(in)), 64<<20, clientTypes)
	if _, _, err := r.next(); err == nil {
		t.Fatal("a truncated message was accepted")
	}
	if cap(r.buf) > 2*growStep {
		t.Fatalf("buffer grew to %d bytes for a %d-byte truncated message", cap(r.buf), len(in))
	}
}

func TestCompleteBuffered(t *testing.T) {
	q := encode(&pgproto3.Query{String: "select 1"})
	s := encode(&pgproto3.Sync{})
	r := newMsgReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, q...), s[:3]...))), 1024, clientTypes)
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	if r.completeBuffered() {
		t.Fatal("a partial Sync counted as a complete message")
	}
	r = newMsgReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, q...), s...))), 1024, clientTypes)
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	if !r.completeBuffered() {
		t.Fatal("a complete buffered Sync was not seen")
	}
}

func TestAppendBufferedTakesOnlyCompleteValidMessages(t *testing.T) {
	q := encode(&pgproto3.Query{String: "select 1"})
	s := encode(&pgproto3.Sync{})
	big := encode(&pgproto3.Query{String: strings.Repeat("x", 200)})
	in := bytes.Join([][]byte{q, s, big, msg('@', "x"), s[:3]}, nil)
	r := newMsgReader(bufio.NewReader(bytes.NewReader(in)), 150, clientTypes)
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	out, ok := r.appendBuffered([]byte("prefix"), 1024)
	if !ok || string(out) != "prefix"+string(s) {
		t.Fatalf("buffered Sync: %q, %v", out, ok)
	}
	// Over the reader's limit: left for next, which reports it.
	if _, ok := r.appendBuffered(nil, 1024); ok {
		t.Fatal("a message over the size limit was taken")
	}
	var pe *ProtocolError
	if _, _, err := r.next(); !errors.As(err, &pe) || !pe.Oversized {
		t.Fatalf("next after a refused oversized message: %v", err)
	}

	r = newMsgReader(bufio.NewReader(bytes.NewReader(bytes.Join([][]byte{q, big, msg('@', "x")}, nil))), 1024, clientTypes)
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.appendBuffered(nil, len(big)-1); ok {
		t.Fatal("a message over the batch limit was taken")
	}
	if out, ok := r.appendBuffered(nil, len(big)); !ok || !bytes.Equal(out, big) {
		t.Fatalf("message at the batch limit: %v", ok)
	}
	if _, ok := r.appendBuffered(nil, 1024); ok {
		t.Fatal("a message of unknown type was taken")
	}
	if _, _, err := r.next(); err == nil || !strings.Contains(err.Error(), "unexpected message type") {
		t.Fatalf("next after a refused unknown type: %v", err)
	}

	r = newMsgReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, q...), s[:3]...))), 1024, clientTypes)
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.appendBuffered(nil, 1024); ok {
		t.Fatal("a partial message was taken")
	}
}

func TestServerKindNamesAuthentication(t *testing.T) {
	for _, tc := range []struct {
		m    interface{ Encode([]byte) ([]byte, error) }
		want string
	}{
		{&pgproto3.AuthenticationOk{}, "AuthenticationOk"},
		{&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}, "AuthenticationSASL"},
		{&pgproto3.ReadyForQuery{TxStatus: 'I'}, "ReadyForQuery"},
		{&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, "DataRow"},
	} {
		b := encode(tc.m)
		if got := serverKind(b[0], b); got != tc.want {
			t.Errorf("serverKind(%T) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

// FuzzMsgReader: whatever the bytes, the reader returns messages whose header
// matches their length and never one larger than the limit, and never panics.
func FuzzMsgReader(f *testing.F) {
	f.Add(encode(&pgproto3.Query{String: "select 1"}))
	f.Add(append(encode(&pgproto3.Parse{Query: "select $1"}), encode(&pgproto3.Sync{})...))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'d', 0, 0, 0, 4, 'X', 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 512
		r := newMsgReader(bufio.NewReaderSize(bytes.NewReader(in), 16), limit, clientTypes)
		consumed := 0
		for {
			typ, m, err := r.next()
			if err != nil {
				var pe *ProtocolError
				if err != io.EOF && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if len(m) > limit || len(m) < headerLen || m[0] != typ || int(binary.BigEndian.Uint32(m[1:]))+1 != len(m) {
				t.Fatalf("inconsistent message %q", m)
			}
			if !bytes.Equal(m, in[consumed:consumed+len(m)]) {
				t.Fatalf("message bytes differ from the input at offset %d", consumed)
			}
			consumed += len(m)
		}
	})
}
