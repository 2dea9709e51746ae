package postgres

import (
	"slices"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgquery "github.com/wasilibs/go-pgquery"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sqlRefs is what a statement binds to columns, as PostgreSQL's own grammar reads
// it: literals (by their byte range in the text) and parameters ($n, 0-based), each
// with the column it is written to or compared with, and the columns of a COPY ...
// FROM STDIN.
type sqlRefs struct {
	literals  []literalRef
	params    map[int]string
	posParams map[int]posRef // parameters bound by position into a table
	copy      *copyTarget
}

type literalRef struct {
	start, end int // byte range of the literal's token, quotes included
	col        string
	pos        *posRef // set when bound by position (col is then "")
}

// relation is a table as a statement names it (schema "" when unqualified).
type relation struct{ schema, name string }

// posRef is a value bound by its position in a row of a table whose columns the
// statement does not list (INSERT INTO t VALUES ...): only the table's declared
// column order ties it to a column.
type posRef struct {
	rel relation
	pos int
}

// copyTarget is a COPY ... FROM STDIN: its column list (nil: the table's, in the
// order the masking rules may declare) and data format.
type copyTarget struct {
	cols   []string
	rel    relation
	format string // text, csv or binary
	delim  byte
}

// parseRefs parses sql with PostgreSQL's grammar (libpg_query, run as WebAssembly so
// the binary stays free of cgo) and collects what it binds to columns. ok is false
// when sql does not parse.
func parseRefs(sql string) (sqlRefs, bool) {
	if e, found := refsCache.get(sql); found {
		return e.refs.ownLiterals(), e.ok
	}
	r, ok := parseRefsUncached(sql)
	refsCache.put(sql, cachedRefs{r.ownLiterals(), ok})
	return r, ok
}

// Agents send the same statement texts again and again (an ORM's statements
// with $n parameters, a job's fixed queries), and each parse of a text takes
// the parser's lock and tens of microseconds, plus a copy of the WebAssembly
// stack for the parser's error handling (about 85 KiB of garbage per call):
// on the privacy fixtures, whose 24,000 parses are of three texts, that copy
// was a third of the processors' allocation. What parseRefs finds depends on
// the text alone (rules are applied afterwards), so it is kept by text, for
// texts of up to refsCacheText bytes.
const refsCacheText = 8 << 10

var refsCache = newTextCache[cachedRefs](refsCacheText)

type cachedRefs struct {
	refs sqlRefs
	ok   bool
}

// ownLiterals is r with literals of its own: a caller may reorder them
// (maskLiterals sorts them in place); the maps and the COPY target are only
// read.
func (r sqlRefs) ownLiterals() sqlRefs {
	r.literals = slices.Clone(r.literals)
	return r
}

// textCacheEntries bounds a textCache; a full cache starts over.
const textCacheEntries = 4096

// textCache keeps what was worked out from a statement's text, for
// statements seen again, safe for the partitions masked in parallel.
type textCache[V any] struct {
	mu      sync.Mutex
	m       map[string]V
	maxText int // longer texts are not kept; 0: no limit
}

func newTextCache[V any](maxText int) *textCache[V] {
	return &textCache[V]{m: map[string]V{}, maxText: maxText}
}

func (c *textCache[V]) get(text string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[text]
	return v, ok
}

func (c *textCache[V]) put(text string, v V) {
	if c.maxText > 0 && len(text) > c.maxText {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= textCacheEntries {
		clear(c.m)
	}
	c.m[text] = v
}

func parseRefsUncached(sql string) (refs sqlRefs, ok bool) {
	tree, err := parse(sql)
	if err != nil {
		return refs, false
	}
	var bound []bindingRef
	for _, st := range tree.GetStmts() {
		walkTree(st.GetStmt().ProtoReflect(), func(m protoreflect.Message) {
			bound = append(bound, bindings(m.Interface(), &refs)...)
		})
	}
	var ends map[int32]int32
	for _, b := range bound {
		switch v := b.val.(type) {
		case *pg.ParamRef:
			if v.Number >= 1 && b.pos != nil {
				if refs.posParams == nil {
					refs.posParams = map[int]posRef{}
				}
				refs.posParams[int(v.Number)-1] = *b.pos
			} else if v.Number >= 1 {
				if refs.params == nil {
					refs.params = map[int]string{}
				}
				refs.params[int(v.Number)-1] = b.col
			}
		case *pg.A_Const:
			if v.Isnull || v.Location < 0 {
				continue
			}
			if ends == nil {
				if ends, ok = tokenEnds(sql); !ok {
					return refs, false
				}
			}
			if end, found := ends[v.Location]; found {
				refs.literals = append(refs.literals, literalRef{start: int(v.Location), end: int(end), col: b.col, pos: b.pos})
			}
		}
	}
	return refs, true
}

var parseMu sync.Mutex

// WarmUp instantiates the SQL parser now rather than on the first statement that
// needs it (a few seconds, more on a loaded machine).
func WarmUp() { _, _ = parse("SELECT 1") }

// parse runs the parser. The WebAssembly module is instantiated on first use (a few
// seconds); calls are serialised, each session's frames come one at a time anyway.
func parse(sql string) (*pg.ParseResult, error) {
	parseMu.Lock()
	defer parseMu.Unlock()
	return pgquery.Parse(sql)
}

// tokenEnds maps each token's start to its end, from PostgreSQL's scanner.
func tokenEnds(sql string) (map[int32]int32, bool) {
	parseMu.Lock()
	defer parseMu.Unlock()
	sc, err := pgquery.Scan(sql)
	if err != nil {
		return nil, false
	}
	out := make(map[int32]int32, len(sc.GetTokens()))
	for _, t := range sc.GetTokens() {
		out[t.GetStart()] = t.GetEnd()
	}
	return out, true
}

// bindingRef is a value node bound to a column, by name or by position.
type bindingRef struct {
	col string
	val any     // *pg.A_Const or *pg.ParamRef
	pos *posRef // bound by position instead of by col
}

// bindings returns what one node binds to columns: an INSERT's VALUES rows by its
// column list, SET col = v (UPDATE, ON CONFLICT), v AS col, and comparisons
// (col = v, col IN (...), col LIKE v, either side). A COPY FROM STDIN sets refs.copy.
func bindings(n any, refs *sqlRefs) []bindingRef {
	var out []bindingRef
	switch n := n.(type) {
	case *pg.InsertStmt:
		out = insertBindings(n)
	case *pg.ResTarget:
		if n.GetName() != "" && n.GetVal() != nil {
			out = append(out, values(n.GetName(), n.GetVal())...)
		}
	case *pg.A_Expr:
		if col := columnName(n.GetLexpr()); col != "" {
			out = append(out, values(col, n.GetRexpr())...)
		}
		if col := columnName(n.GetRexpr()); col != "" {
			out = append(out, values(col, n.GetLexpr())...)
		}
	case *pg.CopyStmt:
		if n.GetIsFrom() && !n.GetIsProgram() && n.GetFilename() == "" {
			refs.copy = copyOf(n)
		}
	}
	return out
}

// insertBindings binds an INSERT's values to its column list, or, without one, to
// their positions in the table's rows: VALUES rows and the select list of INSERT
// ... SELECT.
func insertBindings(n *pg.InsertStmt) []bindingRef {
	var out []bindingRef
	sel := n.GetSelectStmt().GetSelectStmt()
	bind := func(i int, v *pg.Node) {
		if len(n.GetCols()) > 0 {
			if i < len(n.GetCols()) {
				out = append(out, values(n.GetCols()[i].GetResTarget().GetName(), v)...)
			}
			return
		}
		p := &posRef{rel: relationOf(n.GetRelation()), pos: i}
		for _, b := range values("", v) {
			b.pos = p
			out = append(out, b)
		}
	}
	for _, row := range sel.GetValuesLists() {
		for i, v := range row.GetList().GetItems() {
			bind(i, v)
		}
	}
	if len(sel.GetValuesLists()) == 0 && sel.GetOp() == pg.SetOperation_SETOP_NONE {
		for i, t := range sel.GetTargetList() {
			bind(i, t.GetResTarget().GetVal())
		}
	}
	return out
}

func relationOf(r *pg.RangeVar) relation {
	return relation{schema: r.GetSchemaname(), name: r.GetRelname()}
}

// values returns the constants and parameters of v (through casts and lists).
func values(col string, v *pg.Node) []bindingRef {
	switch {
	case v == nil:
		return nil
	case v.GetAConst() != nil:
		return []bindingRef{{col: col, val: v.GetAConst()}}
	case v.GetParamRef() != nil:
		return []bindingRef{{col: col, val: v.GetParamRef()}}
	case v.GetTypeCast() != nil:
		return values(col, v.GetTypeCast().GetArg())
	case v.GetList() != nil:
		var out []bindingRef
		for _, it := range v.GetList().GetItems() {
			out = append(out, values(col, it)...)
		}
		return out
	}
	return nil
}

// columnName is the column a ColumnRef names (its last field), or "".
func columnName(n *pg.Node) string {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.GetArg()
	}
	f := n.GetColumnRef().GetFields()
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1].GetString_().GetSval()
}

func copyOf(n *pg.CopyStmt) *copyTarget {
	c := &copyTarget{format: "text", delim: '\t', rel: relationOf(n.GetRelation())}
	for _, a := range n.GetAttlist() {
		c.cols = append(c.cols, a.GetString_().GetSval())
	}
	for _, o := range n.GetOptions() {
		d := o.GetDefElem()
		arg := d.GetArg().GetString_().GetSval()
		switch d.GetDefname() {
		case "format":
			c.format = strings.ToLower(arg)
			if c.format == "csv" && c.delim == '\t' {
				c.delim = ','
			}
		case "delimiter":
			if len(arg) == 1 {
				c.delim = arg[0]
			}
		}
	}
	return c
}

// walkTree calls fn on m and every message below it.
func walkTree(m protoreflect.Message, fn func(protoreflect.Message)) {
	if !m.IsValid() {
		return
	}
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				walkTree(l.Get(i).Message(), fn)
			}
		case fd.IsMap():
		default:
			walkTree(v.Message(), fn)
		}
		return true
	})
}
