package chdb

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/sinks/clickhouse"
)

func TestTSVEscapesEveryByteTheFormatCannotCarry(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	got := string(appendTSVString(nil, string(all)))
	if strings.ContainsAny(got, "\x00\t\n") {
		t.Fatalf("raw NUL, tab or newline left in %q", got)
	}
	for _, want := range []string{`\x00`, `\t`, `\n`, `\\`, `\x1f`, `\x7f`, "'", "\xff"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in %q", want, got)
		}
	}
	if q := Quote("it's a \\ \x00"); q != `'it\'s a \\ \x00'` {
		t.Errorf("Quote = %s", q)
	}
	// A parameter value is TSV-escaped, then quoted: a backslash becomes four.
	if p := ParamValue(`a\b'c`); p != `'a\\\\b\'c'` {
		t.Errorf("ParamValue = %s", p)
	}
}

func TestAppendTSVBlock(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)
	one := int32(1)
	yes := true
	blk := &clickhouse.Block{Table: "x", Rows: 2, Columns: []clickhouse.BlockColumn{
		{Name: "s", Values: []string{"a\tb", ""}},
		{Name: "n", Values: []int64{-5, 7}},
		{Name: "ts", Values: []time.Time{ts, ts}},
		{Name: "e", Values: []*int32{&one, nil}},
		{Name: "b", Values: []*bool{nil, &yes}},
		{Name: "arr", Values: [][]string{{"x'y", "z"}, {}}},
		{Name: "m", Values: []map[string]int64{{"b": 2, "a": 1}, {}}},
	}}
	got, err := AppendTSV(nil, blk)
	if err != nil {
		t.Fatal(err)
	}
	want := "a\\tb\t-5\t2024-05-01 10:11:12.123456\t1\t\\N\t['x\\'y','z']\t{'a':1,'b':2}\n" +
		"\t7\t2024-05-01 10:11:12.123456\t\\N\ttrue\t[]\t{}\n"
	if string(got) != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	blk.Rows = 3
	if _, err := AppendTSV(nil, blk); err == nil {
		t.Error("columns shorter than Rows were accepted")
	}
}

// rb builds RowBinaryWithNamesAndTypes output.
type rb []byte

func (b rb) str(s string) rb { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
func (b rb) u64(v uint64) rb { return binary.LittleEndian.AppendUint64(b, v) }

func TestDecodeRowBinary(t *testing.T) {
	types := []string{"String", "Int32", "Nullable(UInt8)", "Array(LowCardinality(String))",
		"Map(String, Int64)", "DateTime64(6, 'UTC')", "UUID", "Enum8('a' = 1, 'b,c' = -2)",
		"Decimal(9, 2)", "Tuple(x Int8, String)", "Float64", "Bool"}
	b := binary.AppendUvarint(nil, uint64(len(types)))
	out := rb(b)
	for i := range types {
		out = out.str(string(rune('a' + i)))
	}
	for _, ty := range types {
		out = out.str(ty)
	}
	out = out.str("x\x00y")
	out = binary.LittleEndian.AppendUint32(out, uint32(0xfffffffe)) // -2
	out = append(out, 1)                                            // NULL
	out = append(binary.AppendUvarint(out, 2), nil...)
	out = out.str("p").str("q")
	out = binary.AppendUvarint(out, 1)
	out = out.str("k").u64(uint64(math.MaxUint64)) // -1
	out = out.u64(uint64(1714558272123456))
	// UUID 00112233-4455-6677-8899-aabbccddeeff: each half little-endian.
	out = append(out, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88)
	out = append(out, 0xfe)                                         // Enum8 -2
	out = binary.LittleEndian.AppendUint32(out, uint32(0xffffff85)) // -123 → -1.23
	out = append(out, 5)
	out = out.str("t")
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(2.5))
	out = append(out, 1)

	tab, err := DecodeRowBinary(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"x\x00y", int64(-2), nil, []any{"p", "q"}, map[string]any{"k": int64(-1)},
		time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC), "00112233-4455-6677-8899-aabbccddeeff",
		"b,c", "-1.23", []any{int64(5), "t"}, 2.5, true}
	if len(tab.Rows) != 1 || !reflect.DeepEqual(tab.Rows[0], want) {
		t.Fatalf("got %#v\nwant %#v", tab.Rows, want)
	}
	if tab.Columns[5].Type != "DateTime64(6, 'UTC')" || tab.Columns[0].Name != "a" {
		t.Errorf("columns %+v", tab.Columns)
	}
	if _, err := DecodeRowBinary(out[:len(out)-3]); err == nil {
		t.Error("truncated input decoded without error")
	}
	bad := rb(binary.AppendUvarint(nil, 1)).str("c").str("AggregateFunction(sum, UInt64)")
	if _, err := DecodeRowBinary(bad); err == nil || !strings.Contains(err.Error(), "toString") {
		t.Errorf("unsupported type: err = %v, want a hint to cast", err)
	}
}
