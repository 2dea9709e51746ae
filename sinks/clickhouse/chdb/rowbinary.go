package chdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Query results come back from chDB as RowBinaryWithNamesAndTypes: exact bytes for
// String columns (payloads are binary) and exact integers, which text formats
// would not give without a second round of escaping.

var errShort = errors.New("rowbinary: truncated data")

// decoder reads one value of a ClickHouse type from RowBinary.
type decoder func(r *reader) (any, error)

type reader struct {
	b   []byte
	off int
}

func (r *reader) eof() bool { return r.off >= len(r.b) }

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, errShort
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, errShort
	}
	r.off += n
	return v, nil
}

func (r *reader) str() (string, error) {
	n, err := r.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)) {
		return "", errShort
	}
	p, err := r.take(int(n))
	return string(p), err
}

// Table is a decoded RowBinaryWithNamesAndTypes result.
type Table struct {
	Columns []clickhouse.Column
	Rows    [][]any
}

// DecodeRowBinary decodes a whole RowBinaryWithNamesAndTypes result. Values are the
// Go types clickhouse.Normalize produces. An empty input is an empty result.
func DecodeRowBinary(b []byte) (*Table, error) {
	t := &Table{}
	if len(b) == 0 {
		return t, nil
	}
	r := &reader{b: b}
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(b)) {
		return nil, errShort
	}
	t.Columns = make([]clickhouse.Column, n)
	for i := range t.Columns {
		if t.Columns[i].Name, err = r.str(); err != nil {
			return nil, err
		}
	}
	decs := make([]decoder, n)
	for i := range t.Columns {
		if t.Columns[i].Type, err = r.str(); err != nil {
			return nil, err
		}
		if decs[i], err = decoderFor(t.Columns[i].Type); err != nil {
			return nil, fmt.Errorf("column %s: %w", t.Columns[i].Name, err)
		}
		if strings.TrimSpace(t.Columns[i].Type) == "String" {
			decs[i] = internedString()
		}
	}
	if n == 0 && !r.eof() {
		// Rows of no columns take no bytes: trailing bytes cannot be rows.
		return nil, fmt.Errorf("%d bytes after a header of no columns", len(b)-r.off)
	}
	for !r.eof() {
		row := make([]any, n)
		for i, d := range decs {
			if row[i], err = d(r); err != nil {
				return nil, fmt.Errorf("row %d column %s: %w", len(t.Rows), t.Columns[i].Name, err)
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// internedString decodes a String column whose values repeat from row to row
// (a frame's session_id, direction, kind, gateway_id, empty start and end) as
// one shared value each: a long session's read allocated every one of them on
// every row. A column that turns out to hold many distinct values (payloads,
// hashes) stops being interned once it has internMax of them.
func internedString() decoder {
	const internMax = 64
	seen := map[string]any{}
	return func(r *reader) (any, error) {
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		if n > uint64(len(r.b)) {
			return nil, errShort
		}
		p, err := r.take(int(n))
		if err != nil {
			return nil, err
		}
		if v, ok := seen[string(p)]; ok {
			return v, nil
		}
		var v any = string(p)
		if seen != nil {
			seen[v.(string)] = v
			if len(seen) > internMax {
				seen = nil
			}
		}
		return v, nil
	}
}

func fixed(n int, f func([]byte) any) decoder {
	return func(r *reader) (any, error) {
		p, err := r.take(n)
		if err != nil {
			return nil, err
		}
		return f(p), nil
	}
}

var le = binary.LittleEndian

var simple = map[string]decoder{
	"String":   func(r *reader) (any, error) { return r.str() },
	"Int8":     fixed(1, func(p []byte) any { return int64(int8(p[0])) }),
	"Int16":    fixed(2, func(p []byte) any { return int64(int16(le.Uint16(p))) }),
	"Int32":    fixed(4, func(p []byte) any { return int64(int32(le.Uint32(p))) }),
	"Int64":    fixed(8, func(p []byte) any { return int64(le.Uint64(p)) }),
	"UInt8":    fixed(1, func(p []byte) any { return uint64(p[0]) }),
	"UInt16":   fixed(2, func(p []byte) any { return uint64(le.Uint16(p)) }),
	"UInt32":   fixed(4, func(p []byte) any { return uint64(le.Uint32(p)) }),
	"UInt64":   fixed(8, func(p []byte) any { return le.Uint64(p) }),
	"Int128":   fixed(16, func(p []byte) any { return leBig(p, true) }),
	"UInt128":  fixed(16, func(p []byte) any { return leBig(p, false) }),
	"Int256":   fixed(32, func(p []byte) any { return leBig(p, true) }),
	"UInt256":  fixed(32, func(p []byte) any { return leBig(p, false) }),
	"Float32":  fixed(4, func(p []byte) any { return float64(math.Float32frombits(le.Uint32(p))) }),
	"Float64":  fixed(8, func(p []byte) any { return math.Float64frombits(le.Uint64(p)) }),
	"Bool":     fixed(1, func(p []byte) any { return p[0] != 0 }),
	"DateTime": fixed(4, func(p []byte) any { return time.Unix(int64(le.Uint32(p)), 0).UTC() }),
	"Date":     fixed(2, func(p []byte) any { return time.Unix(int64(le.Uint16(p))*86400, 0).UTC() }),
	"Date32":   fixed(4, func(p []byte) any { return time.Unix(int64(int32(le.Uint32(p)))*86400, 0).UTC() }),
	"UUID": fixed(16, func(p []byte) any {
		// Two little-endian UInt64 halves, high half first.
		var u uuid.UUID
		for i := 0; i < 8; i++ {
			u[i], u[8+i] = p[7-i], p[15-i]
		}
		return u.String()
	}),
	"IPv4": fixed(4, func(p []byte) any { return net.IPv4(p[3], p[2], p[1], p[0]).String() }),
	"IPv6": fixed(16, func(p []byte) any { return net.IP(append([]byte(nil), p...)).String() }),
	// Nothing is the type of a bare NULL; inside Nullable it is never read.
	"Nothing": fixed(1, func([]byte) any { return nil }),
}

// leBig returns a little-endian two's-complement (or unsigned) integer as a decimal string.
func leBig(p []byte, signed bool) any {
	be := make([]byte, len(p))
	for i := range p {
		be[len(p)-1-i] = p[i]
	}
	n := new(big.Int).SetBytes(be)
	if signed && p[len(p)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(p))))
	}
	return n.String()
}

func decoderFor(typ string) (decoder, error) {
	typ = strings.TrimSpace(typ)
	if d, ok := simple[typ]; ok {
		return d, nil
	}
	name, args, ok := splitType(typ)
	if !ok {
		return nil, fmt.Errorf("unsupported type %s (cast it, e.g. toString(...))", typ)
	}
	switch name {
	case "LowCardinality", "SimpleAggregateFunction":
		return decoderFor(args[len(args)-1])
	case "Nullable":
		inner, err := decoderFor(args[0])
		if err != nil {
			return nil, err
		}
		return func(r *reader) (any, error) {
			p, err := r.take(1)
			if err != nil || p[0] != 0 {
				return nil, err
			}
			return inner(r)
		}, nil
	case "Array":
		inner, err := decoderFor(args[0])
		if err != nil {
			return nil, err
		}
		return func(r *reader) (any, error) { return readArray(r, inner) }, nil
	case "Map":
		if len(args) != 2 {
			return nil, fmt.Errorf("type %s: want Map(K, V)", typ)
		}
		return mapDecoder(args[0], args[1])
	case "Tuple":
		return tupleDecoder(args)
	case "FixedString":
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", typ, err)
		}
		return fixed(n, func(p []byte) any { return string(p) }), nil
	case "DateTime":
		return fixed(4, func(p []byte) any { return time.Unix(int64(le.Uint32(p)), 0).UTC() }), nil
	case "DateTime64":
		return dateTime64Decoder(args[0])
	case "Enum8", "Enum16":
		return enumDecoder(name, args)
	case "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256":
		return decimalDecoder(name, args)
	}
	return nil, fmt.Errorf("unsupported type %s (cast it, e.g. toString(...))", typ)
}

func readArray(r *reader, inner decoder) (any, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, errShort // a count larger than the remaining bytes is corrupt
	}
	out := make([]any, n)
	for i := range out {
		if out[i], err = inner(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func mapDecoder(kt, vt string) (decoder, error) {
	kd, err := decoderFor(kt)
	if err != nil {
		return nil, err
	}
	vd, err := decoderFor(vt)
	if err != nil {
		return nil, err
	}
	return func(r *reader) (any, error) {
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		if n > uint64(len(r.b)-r.off) {
			return nil, errShort
		}
		out := make(map[string]any, n)
		for range n {
			k, err := kd(r)
			if err != nil {
				return nil, err
			}
			v, err := vd(r)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = v
		}
		return out, nil
	}, nil
}

func tupleDecoder(args []string) (decoder, error) {
	decs := make([]decoder, len(args))
	for i, a := range args {
		// Named tuple elements read "name Type".
		if name, rest, ok := strings.Cut(a, " "); ok && identLike(name) {
			if _, err := decoderFor(rest); err == nil {
				a = rest
			}
		}
		d, err := decoderFor(a)
		if err != nil {
			return nil, err
		}
		decs[i] = d
	}
	return func(r *reader) (any, error) {
		out := make([]any, len(decs))
		for i, d := range decs {
			v, err := d(r)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}, nil
}

func identLike(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func dateTime64Decoder(precision string) (decoder, error) {
	p, err := strconv.Atoi(strings.TrimSpace(precision))
	if err != nil || p < 0 || p > 9 {
		return nil, fmt.Errorf("DateTime64 precision %q", precision)
	}
	scale := int64(math.Pow10(9 - p))
	return fixed(8, func(b []byte) any {
		v := int64(le.Uint64(b))
		div := int64(math.Pow10(p))
		sec, frac := v/div, v%div
		if frac < 0 {
			sec, frac = sec-1, frac+div
		}
		return time.Unix(sec, frac*scale).UTC()
	}), nil
}

func enumDecoder(name string, args []string) (decoder, error) {
	names := map[int64]string{}
	for _, a := range args {
		q, num, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("%s element %q", name, a)
		}
		s, err := unquote(strings.TrimSpace(q))
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s element %q: %w", name, a, err)
		}
		names[n] = s
	}
	if name == "Enum8" {
		return fixed(1, func(p []byte) any { return names[int64(int8(p[0]))] }), nil
	}
	return fixed(2, func(p []byte) any { return names[int64(int16(le.Uint16(p)))] }), nil
}

func decimalDecoder(name string, args []string) (decoder, error) {
	var prec, scale int
	var err error
	switch name {
	case "Decimal":
		if len(args) != 2 {
			return nil, fmt.Errorf("Decimal(P, S) expected")
		}
		if prec, err = strconv.Atoi(strings.TrimSpace(args[0])); err != nil {
			return nil, err
		}
		scale, err = strconv.Atoi(strings.TrimSpace(args[1]))
	default:
		prec = map[string]int{"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}[name]
		scale, err = strconv.Atoi(strings.TrimSpace(args[0]))
	}
	if err != nil {
		return nil, err
	}
	size := 32
	switch {
	case prec <= 9:
		size = 4
	case prec <= 18:
		size = 8
	case prec <= 38:
		size = 16
	}
	return fixed(size, func(p []byte) any {
		s := leBig(p, true).(string)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		if scale > 0 {
			s = strings.Repeat("0", max(0, scale+1-len(s))) + s
			s = s[:len(s)-scale] + "." + s[len(s)-scale:]
		}
		if neg {
			s = "-" + s
		}
		return s
	}), nil
}

// splitType splits "Name(a, b(c, d), 'e,f')" into Name and its top-level arguments.
func splitType(typ string) (string, []string, bool) {
	open := strings.IndexByte(typ, '(')
	if open <= 0 || !strings.HasSuffix(typ, ")") {
		return "", nil, false
	}
	name, body := typ[:open], typ[open+1:len(typ)-1]
	var args []string
	depth, start, quoted := 0, 0, false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case quoted && c == '\\':
			i++
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(body[start:i]))
			start = i + 1
		}
	}
	args = append(args, strings.TrimSpace(body[start:]))
	return name, args, true
}

func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", fmt.Errorf("want a quoted string, got %s", s)
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// rows iterates over a decoded result.
type rows struct {
	t *Table
	i int
}

func (r *rows) Columns() []clickhouse.Column { return r.t.Columns }
func (r *rows) Next() bool                   { r.i++; return r.i < len(r.t.Rows) }
func (r *rows) Err() error                   { return nil }
func (r *rows) Close() error                 { return nil }

func (r *rows) Values() ([]any, error) { return r.t.Rows[r.i], nil }

func (r *rows) Scan(dest ...any) error {
	row := r.t.Rows[r.i]
	if len(dest) != len(row) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(row))
	}
	for i, v := range row {
		if err := clickhouse.ScanInto(dest[i], v); err != nil {
			return fmt.Errorf("column %s: %w", r.t.Columns[i].Name, err)
		}
	}
	return nil
}
