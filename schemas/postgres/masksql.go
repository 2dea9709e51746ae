package postgres

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// MaskUnparsed counts statements that name a ruled column but did not parse: they
// were masked by the detectors alone.
const MaskUnparsed = "sql_unparsed"

// MaskPositional counts values masked whole because they are bound by position
// (an INSERT or COPY without a column list, a prepared positional INSERT) into a
// table whose column order the rules do not declare, or past its declared columns:
// which column they fill is unknown, so they are taken as ruled.
const MaskPositional = "positional"

// positionalRe finds statements that may bind values by position: an INSERT whose
// table is not followed by a column list, a COPY FROM STDIN without one. They are
// parsed although they name no ruled column. It errs on the side of matching.
var positionalRe = regexp.MustCompile(`(?is)\binsert\s+into\s+[^(;]*?\b(?:values|select)\b|\bcopy\s+[^(;]*?\bfrom\s+stdin\b`)

// mayBind reports whether s may bind a value to a column rule r has: it names a
// ruled column, or binds values by position.
func mayBind(s string, r protocol.MaskRules) bool {
	return mayBePositional(s) && positionalRe.MatchString(s) || namesRuledColumn(s, r)
}

// mayBePositional is a quick test before positionalRe, which backtracks through
// every statement: an ASCII statement that holds neither "insert" nor "copy" (any
// case) cannot match it. Most statements are SELECTs. A statement with other bytes
// goes to the expression, whose case folding also knows letters such as 'ſ'.
func mayBePositional(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			return true
		case c|0x20 == 'i' && i+6 <= len(s) && strings.EqualFold(s[i:i+6], "insert"):
			return true
		case c|0x20 == 'c' && i+4 <= len(s) && strings.EqualFold(s[i:i+4], "copy"):
			return true
		}
	}
	return false
}

// declaredColumns is the column order the rules declare for rel.
func declaredColumns(r protocol.MaskRules, rel relation) ([]string, bool) {
	tr, ok := r.(protocol.TableRules)
	if !ok {
		return nil, false
	}
	return tr.TableColumns(rel.schema, rel.name)
}

// positionalRule says whether a value bound by position p is masked whole, and
// counted as which type: by the rule of the declared column at its position, and
// always when the table is not declared or the position is past its columns
// (over-masking is the safe side).
func positionalRule(r protocol.MaskRules, p posRef) (typ string, masked bool) {
	cols, ok := declaredColumns(r, p.rel)
	switch {
	case !ok || p.pos >= len(cols):
		return MaskPositional, true
	case r.Column(cols[p.pos]):
		return MaskColumn, true
	}
	return "", false
}

// sql masks the text of a Query or Parse: literals bound to ruled columns (INSERT
// ... VALUES, SET col = ..., WHERE col = ... / IN (...), ... AS col) are masked
// whole, then the detectors run over the rest. A COPY ... FROM STDIN of a Query
// readies the masking of its data rows.
func (m masker) sql(s string, kind string, counts protocol.Counts) string {
	refs, parsed := statementRefs(s, m.r)
	if !parsed {
		counts.Add(MaskUnparsed, 1)
	}
	if kind == Query {
		m.c.Copy = newCopyState(refs.copy, m.r)
	}
	if len(refs.literals) > 0 {
		s = maskLiterals(s, refs.literals, m.r, m.st, counts)
	}
	return m.text(s, counts)
}

// statementRefs parses s when it names a ruled column (the parse is the costly part
// of masking a statement, and a statement naming none has nothing to bind). parsed
// is false only for a statement that names one and does not parse.
func statementRefs(s string, r protocol.MaskRules) (refs sqlRefs, parsed bool) {
	if !mayBind(s, r) {
		return refs, true
	}
	return parseRefs(s)
}

var identRe = regexp.MustCompile(`[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*|"(?:[^"]|"")+"`)

// namesRuledColumn runs for every statement the masker sees, most of them
// plain ASCII without quoted identifiers: those are scanned by hand (the
// expression and its list of matches were 8% of the processors' CPU on
// pgbench traffic). Others go through identRe, whose class ranges are runes,
// not bytes. FuzzNamesRuledColumn holds the two to the same identifiers.
func namesRuledColumn(s string, r protocol.MaskRules) bool {
	if plainSQL(s) {
		return eachPlainIdent(s, r.Column)
	}
	for _, id := range identRe.FindAllString(s, -1) {
		if strings.HasPrefix(id, `"`) {
			id = strings.ReplaceAll(id[1:len(id)-1], `""`, `"`)
		}
		if r.Column(id) {
			return true
		}
	}
	return false
}

// plainSQL: ASCII without a double quote, where identRe's matches are the
// runs eachPlainIdent finds.
func plainSQL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c == '"' {
			return false
		}
	}
	return true
}

// eachPlainIdent calls f with each identifier of a plainSQL statement, left to
// right as identRe.FindAllString finds them, until f returns true.
func eachPlainIdent(s string, f func(string) bool) bool {
	for i := 0; i < len(s); {
		if !identStart(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && (identStart(s[j]) || s[j] >= '0' && s[j] <= '9' || s[j] == '$') {
			j++
		}
		if f(s[i:j]) {
			return true
		}
		i = j
	}
	return false
}

func identStart(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' || c == '_' }

// maskLiterals replaces the literals bound to ruled columns, keeping their quotes so
// the statement still reads as SQL.
func maskLiterals(s string, lits []literalRef, r protocol.MaskRules, st protocol.Style, counts protocol.Counts) string {
	slices.SortFunc(lits, func(a, b literalRef) int { return a.start - b.start })
	var b strings.Builder
	prev := 0
	for _, l := range lits {
		typ, masked := MaskColumn, r.Column(l.col)
		if l.pos != nil {
			typ, masked = positionalRule(r, *l.pos)
		}
		if l.start < prev || l.end > len(s) || !masked {
			continue
		}
		counts.Add(typ, 1)
		b.WriteString(s[prev:l.start])
		b.WriteString(maskedLiteral(s[l.start:l.end], typ, st))
		prev = l.end
	}
	b.WriteString(s[prev:])
	return b.String()
}

// maskedLiteral is a literal token with its value masked: 'x', E'x', $$x$$ keep
// their delimiters; a number becomes a string.
func maskedLiteral(tok, typ string, st protocol.Style) string {
	open, body, close := literalParts(tok)
	if st == protocol.SameLength {
		return open + strings.Repeat("*", len(body)) + close
	}
	if strings.HasPrefix(open, "$") {
		return open + Token(typ) + close
	}
	return "'" + Token(typ) + "'"
}

func literalParts(tok string) (open, body, close string) {
	if q := strings.IndexByte(tok, '\''); q >= 0 && strings.HasSuffix(tok, "'") && len(tok) > q+1 {
		return tok[:q+1], tok[q+1 : len(tok)-1], "'"
	}
	if strings.HasPrefix(tok, "$") {
		if e := strings.IndexByte(tok[1:], '$'); e >= 0 {
			tag := tok[:e+2]
			if len(tok) >= 2*len(tag) && strings.HasSuffix(tok, tag) {
				return tag, tok[len(tag) : len(tok)-len(tag)], tag
			}
		}
	}
	return "", tok, ""
}

// copyData masks the data of a CopyData, same length (in binary COPY each field is
// length-prefixed inside the data): the fields of ruled columns whole when a COPY
// FROM STDIN names them, then the detectors.
func (m masker) copyData(b []byte, counts protocol.Counts) []byte {
	if m.c.Copy != nil {
		b = append([]byte(nil), b...)
		m.c.Copy.mask(b, counts)
	}
	return m.r.Text(b, protocol.SameLength, counts)
}

// afterMask updates the masking state once the last frame of f's message is masked.
func (c *Conversation) afterMask(f *schemas.Frame) {
	if f.Direction == schemas.Client && (f.Kind == CopyDone || f.Kind == CopyFail) {
		c.Copy = nil
	}
}

var (
	paramCmpRe    = regexp.MustCompile(`(?i)([a-z_][a-z0-9_$]*"?)\s*(?:=|<>|!=|\blike\b|\bilike\b)\s*\$(\d+)\b`)
	paramInsertRe = regexp.MustCompile(`(?is)\binsert\s+into\s+[^\s(]+\s*\(([^)]*)\)\s*values\s*\(([^)]*)\)`)
)

// ParamColumns maps Bind parameters (0-based) to the column a statement binds them
// to: compares them with (col = $n, col IN ($1, $2), col LIKE $n), sets (SET col =
// $n), or inserts them into (INSERT INTO t (a, b) VALUES ($1, $2)), so column rules
// also cover parameters. A statement that does not parse is read by patterns, best
// effort.
func ParamColumns(sql string) map[int]string {
	if refs, ok := parseRefs(sql); ok {
		return refs.params
	}
	return paramColumnsByPattern(sql)
}

// paramColumns is ParamColumns for a statement under rules r: one naming no ruled
// column binds nothing they mask, and is not parsed. Results are cached by text (a
// prepared statement is bound many times).
func paramColumns(sql string, r protocol.MaskRules) paramRefs {
	if !mayBind(sql, r) {
		return paramRefs{}
	}
	if m, ok := paramCache.get(sql); ok {
		return m
	}
	var m paramRefs
	if refs, ok := parseRefs(sql); ok {
		m = paramRefs{cols: refs.params, pos: refs.posParams}
	} else {
		m = paramRefs{cols: paramColumnsByPattern(sql)}
	}
	paramCache.put(sql, m)
	return m
}

// paramRefs is what a statement binds its parameters to: columns by name, and
// positions in a table's rows.
type paramRefs struct {
	cols map[int]string
	pos  map[int]posRef
}

var paramCache = newTextCache[paramRefs](0)

func paramColumnsByPattern(sql string) map[int]string {
	out := map[int]string{}
	for _, m := range paramCmpRe.FindAllStringSubmatch(sql, -1) {
		if n, err := strconv.Atoi(m[2]); err == nil && n >= 1 {
			out[n-1] = unquoteIdent(m[1])
		}
	}
	for _, m := range paramInsertRe.FindAllStringSubmatch(sql, -1) {
		cols, vals := strings.Split(m[1], ","), strings.Split(m[2], ",")
		if len(cols) != len(vals) {
			continue
		}
		for i, v := range vals {
			v = strings.TrimSpace(v)
			if !strings.HasPrefix(v, "$") {
				continue
			}
			if n, err := strconv.Atoi(v[1:]); err == nil && n >= 1 {
				out[n-1] = unquoteIdent(strings.TrimSpace(cols[i]))
			}
		}
	}
	return out
}

func unquoteIdent(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Trim(s, `"`)
}
