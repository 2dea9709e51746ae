package chdb

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// chDB takes a query as a C string, so inserted data travels inline as text: the
// TabSeparated format, with every byte a C string or TSV cannot carry raw (NUL,
// control bytes, tab, newline, backslash) written as an escape the engine decodes.

const hexDigits = "0123456789abcdef"

// appendTSVString appends s in TabSeparated's escaped form.
func appendTSVString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendQuoted appends s as a single-quoted ClickHouse string literal (also the
// element form inside arrays and maps). Escapes keep it free of NUL, tab and newline.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '\'':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '\'')
}

// Quote returns s as a ClickHouse string literal.
func Quote(s string) string { return string(appendQuoted(nil, s)) }

// ParamValue returns the SQL literal that sets a query parameter to v: the engine
// unquotes the literal, then parses the parameter in TSV's escaped form.
func ParamValue(v string) string { return Quote(string(appendTSVString(nil, v))) }

func appendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, "2006-01-02 15:04:05.000000")
}

// columnWriter appends row i of one column.
type columnWriter func(b []byte, i int) []byte

func writerFor(c clickhouse.BlockColumn) (columnWriter, int, error) {
	switch v := c.Values.(type) {
	case []string:
		return func(b []byte, i int) []byte { return appendTSVString(b, v[i]) }, len(v), nil
	case []int64:
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, v[i], 10) }, len(v), nil
	case []int32:
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, int64(v[i]), 10) }, len(v), nil
	case []uint64:
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, v[i], 10) }, len(v), nil
	case []uint32:
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, uint64(v[i]), 10) }, len(v), nil
	case []uint8:
		return func(b []byte, i int) []byte { return strconv.AppendUint(b, uint64(v[i]), 10) }, len(v), nil
	case []bool:
		return func(b []byte, i int) []byte { return strconv.AppendBool(b, v[i]) }, len(v), nil
	case []time.Time:
		return func(b []byte, i int) []byte { return appendTime(b, v[i]) }, len(v), nil
	case []*time.Time:
		return nullable(v, appendTime), len(v), nil
	case []*int32:
		return nullable(v, func(b []byte, x int32) []byte { return strconv.AppendInt(b, int64(x), 10) }), len(v), nil
	case []*bool:
		return nullable(v, strconv.AppendBool), len(v), nil
	case []*uint8:
		return nullable(v, func(b []byte, x uint8) []byte { return strconv.AppendUint(b, uint64(x), 10) }), len(v), nil
	case [][]string:
		return func(b []byte, i int) []byte {
			b = append(b, '[')
			for j, s := range v[i] {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendQuoted(b, s)
			}
			return append(b, ']')
		}, len(v), nil
	case []map[string]int64:
		return func(b []byte, i int) []byte {
			b = append(b, '{')
			for j, k := range clickhouse.SortedKeys(v[i]) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendQuoted(b, k)
				b = append(b, ':')
				b = strconv.AppendInt(b, v[i][k], 10)
			}
			return append(b, '}')
		}, len(v), nil
	}
	return nil, 0, fmt.Errorf("column %s: unsupported values %T", c.Name, c.Values)
}

func nullable[T any](v []*T, f func([]byte, T) []byte) columnWriter {
	return func(b []byte, i int) []byte {
		if v[i] == nil {
			return append(b, '\\', 'N')
		}
		return f(b, *v[i])
	}
}

// AppendTSV appends the block's rows in TabSeparated format.
func AppendTSV(b []byte, blk *clickhouse.Block) ([]byte, error) {
	ws := make([]columnWriter, len(blk.Columns))
	for i, c := range blk.Columns {
		w, n, err := writerFor(c)
		if err != nil {
			return nil, err
		}
		if n != blk.Rows {
			return nil, fmt.Errorf("column %s: %d values for %d rows", c.Name, n, blk.Rows)
		}
		ws[i] = w
	}
	for r := 0; r < blk.Rows; r++ {
		for i, w := range ws {
			if i > 0 {
				b = append(b, '\t')
			}
			b = w(b, r)
		}
		b = append(b, '\n')
	}
	return b, nil
}
