package clickhouse

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Servers older than protocol revision 54459 (ClickHouse 18.x) do not parse
// {name:Type} placeholders, so for them the parameters are written into the SQL
// as literals. Only the Store's own SQL carries placeholders; the values are
// what users typed (subjects, session ids, search text) and are quoted and
// escaped here, never spliced raw.

var placeholder = regexp.MustCompile(`\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}`)

// inlineParams replaces every {name:Type} placeholder of sql with its value as
// a literal of that type.
func inlineParams(sql string, params Params) (string, error) {
	var err error
	out := placeholder.ReplaceAllStringFunc(sql, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		v, ok := params[sub[1]]
		if !ok {
			err = fmt.Errorf("query parameter %q is not set", sub[1])
			return m
		}
		lit, e := literal(sub[2], v)
		if e != nil && err == nil {
			err = fmt.Errorf("query parameter %q: %w", sub[1], e)
		}
		return lit
	})
	return out, err
}

// literal renders v as SQL of type typ. Integers stay bare (LIMIT wants a
// number, not an expression); other types are a quoted string cast to the type.
func literal(typ, v string) (string, error) {
	switch {
	case strings.HasPrefix(typ, "UInt"):
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	case strings.HasPrefix(typ, "Int"):
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	case typ == "String":
		return quote(v), nil
	}
	return "CAST(" + quote(v) + " AS " + typ + ")", nil
}

// quote is a ClickHouse string literal: backslash and quote escaped, and the
// bytes that could end or confuse a token written as escapes.
func quote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
