package mask

import (
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/schemas/protocol"
)

// Config is the masking section of the processor's YAML configuration: defaults for
// every target, and per-target additions. Lists in a target add to the defaults (a
// target cannot silently lose a default column rule); detectors can be switched off
// per target by name.
//
//	masking:
//	  defaults:
//	    detectors: {phone: false}       # every detector is on unless switched off
//	    columns: ["*password*", ssn]    # DataRow values of these columns (globs, any case)
//	    params: none                    # Bind parameters: none | all | [1, 3]
//	    regex: [{name: ticket, pattern: 'TCK-[0-9]{6}'}]
//	    http_headers: [authorization, cookie]
//	    json_fields: [password, token]
//	    tables:                         # column order, for values bound by position
//	      users: [id, email, password]  # unqualified: schema public
//	      billing.cards: [id, card_number]
//	  targets:
//	    orders: {columns: [email], params: all}
type Config struct {
	Defaults Rules            `yaml:"defaults"`
	Targets  map[string]Rules `yaml:"targets"`
}

// Rules are the masking rules of one target (or the defaults).
type Rules struct {
	Detectors   map[string]bool `yaml:"detectors"`
	Columns     []string        `yaml:"columns"`
	Params      *ParamRule      `yaml:"params"`
	Regex       []RegexRule     `yaml:"regex"`
	HTTPHeaders []string        `yaml:"http_headers"`
	JSONFields  []string        `yaml:"json_fields"`
	// Tables declares the column order of tables, so that values an INSERT or COPY
	// binds by position (no column list) are tied to column rules.
	Tables map[string][]string `yaml:"tables"`
}

// RegexRule masks every match of Pattern (or only its submatch Group) as type
// "regex:<Name>".
type RegexRule struct {
	Name    string `yaml:"name"`
	Pattern string `yaml:"pattern"`
	Group   int    `yaml:"group"`
}

// ParamRule says which Bind parameters are masked regardless of their content:
// none, all, or a list of 1-based positions.
type ParamRule struct {
	All       bool
	Positions []int
}

// UnmarshalYAML accepts "none", "all" or a list of positions.
func (p *ParamRule) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		switch strings.ToLower(n.Value) {
		case "all":
			*p = ParamRule{All: true}
		case "none", "":
			*p = ParamRule{}
		default:
			return fmt.Errorf("line %d: params: want none, all or a list of positions, got %q", n.Line, n.Value)
		}
		return nil
	case yaml.SequenceNode:
		var pos []int
		if err := n.Decode(&pos); err != nil {
			return fmt.Errorf("line %d: params: %w", n.Line, err)
		}
		for _, v := range pos {
			if v < 1 {
				return fmt.Errorf("line %d: params: positions start at 1, got %d", n.Line, v)
			}
		}
		*p = ParamRule{Positions: pos}
		return nil
	}
	return fmt.Errorf("line %d: params: want none, all or a list of positions", n.Line)
}

// MarshalYAML is the inverse of UnmarshalYAML.
func (p ParamRule) MarshalYAML() (any, error) {
	if p.All {
		return "all", nil
	}
	if len(p.Positions) == 0 {
		return "none", nil
	}
	return p.Positions, nil
}

// Built-in defaults, used where the configuration says nothing.
var (
	DefaultColumns = []string{"*password*", "*passwd*", "*secret*", "token", "*_token", "api_key", "*apikey*",
		"ssn", "*private_key*", "card_number", "cvv", "iban"}
	DefaultHTTPHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
		"x-auth-token", "x-amz-security-token", "x-goog-api-key"}
	DefaultJSONFields = []string{"password", "passwd", "secret", "token", "access_token", "refresh_token",
		"id_token", "client_secret", "api_key", "apikey", "private_key", "secret_access_key"}
)

// Masker holds the compiled rules of every configured target. It is safe for
// concurrent use; per-session state lives in State.
type Masker struct {
	defaults *targetRules
	targets  map[string]*targetRules
}

type targetRules struct {
	dets       []detector
	extra      []namedPattern
	columns    []string // lower-case globs
	params     ParamRule
	headers    map[string]bool
	jsonFields map[string]bool
	tables     map[string][]string // "schema.table" → lower-case columns in order

	// columnSeen remembers maskColumn's answers. SQL statements name a small
	// vocabulary of identifiers, and every identifier of every statement is checked
	// against every column glob (to find statements that may bind a ruled column):
	// that glob matching was the processors' largest cost on pgbench traffic.
	columnMu   sync.RWMutex
	columnSeen map[string]bool
}

// maxColumnSeen bounds columnSeen; names past it are matched every time.
const maxColumnSeen = 4096

type namedPattern struct {
	typ   string
	re    *regexp.Regexp
	group int
}

// New compiles a configuration. Unknown detector names and bad patterns are errors.
func New(cfg Config) (*Masker, error) {
	m := &Masker{targets: map[string]*targetRules{}}
	var err error
	if m.defaults, err = compile(Rules{}, cfg.Defaults, "defaults"); err != nil {
		return nil, err
	}
	for name, r := range cfg.Targets {
		if m.targets[name], err = compile(cfg.Defaults, r, "targets."+name); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// compile merges a target's rules over the defaults and over the built-ins.
func compile(defaults, r Rules, where string) (*targetRules, error) {
	on := map[string]bool{}
	for _, d := range Detectors {
		on[d] = true
	}
	for _, layer := range []Rules{defaults, r} {
		for name, v := range layer.Detectors {
			if _, ok := builtin[name]; !ok {
				return nil, fmt.Errorf("masking.%s.detectors: unknown detector %q (known: %s)", where, name, strings.Join(Detectors, ", "))
			}
			on[name] = v
		}
	}
	t := &targetRules{headers: map[string]bool{}, jsonFields: map[string]bool{}, tables: map[string][]string{},
		columnSeen: map[string]bool{}}
	for _, d := range Detectors {
		if on[d] {
			t.dets = append(t.dets, builtin[d])
		}
	}
	t.columns = lowerAll(DefaultColumns, defaults.Columns, r.Columns)
	for _, c := range t.columns {
		if _, err := path.Match(c, ""); err != nil {
			return nil, fmt.Errorf("masking.%s.columns: bad pattern %q: %v", where, c, err)
		}
	}
	for _, h := range lowerAll(DefaultHTTPHeaders, defaults.HTTPHeaders, r.HTTPHeaders) {
		t.headers[h] = true
	}
	for _, f := range lowerAll(DefaultJSONFields, defaults.JSONFields, r.JSONFields) {
		t.jsonFields[f] = true
	}
	for _, layer := range []Rules{defaults, r} {
		for name, cols := range layer.Tables {
			key, err := tableKey(name)
			if err == nil && len(cols) == 0 {
				err = errors.New("needs its columns in order")
			}
			if err != nil {
				return nil, fmt.Errorf("masking.%s.tables %q: %v", where, name, err)
			}
			t.tables[key] = lowerAll(cols)
		}
	}
	switch {
	case r.Params != nil:
		t.params = *r.Params
	case defaults.Params != nil:
		t.params = *defaults.Params
	}
	for _, rr := range append(append([]RegexRule{}, defaults.Regex...), r.Regex...) {
		if rr.Name == "" || rr.Pattern == "" {
			return nil, fmt.Errorf("masking.%s.regex: each rule needs a name and a pattern", where)
		}
		re, err := regexp.Compile(rr.Pattern)
		if err != nil {
			return nil, fmt.Errorf("masking.%s.regex %q: %w", where, rr.Name, err)
		}
		if rr.Group < 0 || rr.Group > re.NumSubexp() {
			return nil, fmt.Errorf("masking.%s.regex %q: group %d does not exist", where, rr.Name, rr.Group)
		}
		t.extra = append(t.extra, namedPattern{"regex:" + rr.Name, re, rr.Group})
	}
	return t, nil
}

// tableKey is a declared table's name as "schema.table", lower case (PostgreSQL
// folds unquoted names; a quoted mixed-case name is matched regardless of case,
// which can only mask more). An unqualified name is in schema public, where the
// default search_path puts it.
func tableKey(name string) (string, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(name)), ".")
	for i := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(parts[i]), `"`)
		if parts[i] == "" {
			return "", errors.New("want table or schema.table")
		}
	}
	switch len(parts) {
	case 1:
		return "public." + parts[0], nil
	case 2:
		return parts[0] + "." + parts[1], nil
	}
	return "", errors.New("want table or schema.table")
}

// tableColumns is the declared column order of a table a statement names (schema
// "" when unqualified, resolved as the default search_path "$user", public would:
// declared tables live in public unless qualified).
func (t *targetRules) tableColumns(schema, table string) ([]string, bool) {
	if schema == "" {
		schema = "public"
	}
	cols, ok := t.tables[strings.ToLower(schema)+"."+strings.ToLower(table)]
	return cols, ok
}

func lowerAll(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, s := range l {
			s = strings.ToLower(strings.TrimSpace(s))
			if s != "" && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func (m *Masker) rules(target string) *targetRules {
	if t, ok := m.targets[target]; ok {
		return t
	}
	return m.defaults
}

// maskColumn reports whether a column (by its RowDescription name) is masked.
func (t *targetRules) maskColumn(name string) bool {
	name = strings.ToLower(name)
	t.columnMu.RLock()
	hit, seen := t.columnSeen[name]
	t.columnMu.RUnlock()
	if seen {
		return hit
	}
	hit = t.matchColumn(name)
	t.columnMu.Lock()
	if len(t.columnSeen) < maxColumnSeen {
		t.columnSeen[name] = hit
	}
	t.columnMu.Unlock()
	return hit
}

func (t *targetRules) matchColumn(name string) bool {
	for _, g := range t.columns {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// maskParam reports whether Bind parameter i (0-based) is masked by position.
func (t *targetRules) maskParam(i int) bool {
	if t.params.All {
		return true
	}
	for _, p := range t.params.Positions {
		if p == i+1 {
			return true
		}
	}
	return false
}

// Counts is what was masked, by type.
type Counts map[string]int64

func (c Counts) add(typ string, n int64) {
	if n > 0 {
		c[typ] += n
	}
}

func (c Counts) merge(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// Token is what replaces a masked value where the length may change.
func Token(typ string) string { return "[masked:" + typ + "]" }

// style says how a masked value is written.
type style int

const (
	token      style = iota // "[masked:type]": structured payloads whose framing is rewritten
	sameLength              // '*' per byte (line breaks kept): terminal streams, fragments
)

// text masks b with the target's detectors and regex rules, returning the new bytes
// (b itself when nothing matched) and adding to counts.
func (t *targetRules) text(b []byte, st style, counts Counts) []byte {
	ms := scan(b, t.dets, t.extra)
	if len(ms) == 0 {
		return b
	}
	for _, m := range ms {
		counts.add(m.Type, 1)
	}
	return apply(b, ms, st)
}

// stream masks b, which follows prev in a stream: it scans prev and b together and
// masks, in b, every match that ends in b (one that began in prev too). Matches
// wholly in prev were masked when prev was. open is the type of a match that ran to
// the end of prev ("" if none): prev holds it masked, so it is not found again,
// and b's leading bytes that may continue it are masked as its rest. The result
// also says how far a match ending in b reaches back into prev (for frames still
// held back) and how much of the end of prev+b may begin a secret still being
// written (see Pending).
func (t *targetRules) stream(prev, b []byte, open string, st style, counts Counts) protocol.Streamed {
	var ms []Match
	var res protocol.Streamed
	if n := continuation(b, open); open != "" && n > 0 {
		ms = append(ms, Match{0, n, open})
		if len(prev) > 0 && numberType(open) && strings.IndexByte(" -.", prev[len(prev)-1]) >= 0 {
			// The separator before this group belongs to the number.
			res.Back = append(res.Back, protocol.Span{From: 1, To: 0, Type: open})
		}
	}
	joined := make([]byte, 0, len(prev)+len(b))
	joined = append(append(joined, prev...), b...)
	for _, m := range scan(joined, t.dets, t.extra) {
		if m.Start < len(prev) && unmasked(joined[m.Start:min(m.End, len(prev))]) {
			res.Back = append(res.Back, protocol.Span{From: len(prev) - m.Start, To: max(len(prev)-m.End, 0), Type: m.Type})
		}
		if m.End <= len(prev) {
			continue
		}
		if m.End == len(joined) && m.Type != PrivateKey {
			res.Open = m.Type // a key block carries on by its BEGIN line in prev
		}
		if m.End == len(joined)-1 && numberType(m.Type) && strings.IndexByte(" -.", joined[m.End]) >= 0 {
			res.Open = m.Type // a number in groups may go on after its separator
		}
		m.Start, m.End = max(m.Start-len(prev), 0), m.End-len(prev)
		if len(ms) > 0 && m.Start < ms[0].End {
			ms[0].End = max(ms[0].End, m.End) // the same secret, found again
			continue
		}
		ms = append(ms, m)
	}
	if len(ms) > 0 && ms[0].End == len(b) && open != "" {
		res.Open = ms[0].Type
	}
	if res.Open == "" && numberType(open) && len(b) == 1 && strings.IndexByte(" -.", b[0]) >= 0 {
		res.Open = open // a lone separator between two groups of a number
	}
	res.Out, res.Pending = b, Pending(joined)
	if numberType(res.Open) {
		res.Pending = max(res.Pending, 1) // its next group may follow
	}
	if len(ms) > 0 {
		for _, m := range ms {
			counts.add(m.Type, 1)
		}
		res.Out = apply(b, ms, st)
	}
	return res
}

// unmasked reports whether b holds a byte that masking would change.
func unmasked(b []byte) bool {
	for _, c := range b {
		if c != '*' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}

// continuation is the length of b's leading run of bytes that can continue a
// token, a key, an address or a number of type open: up to the first space,
// quote, bracket or separator, or, for a number written in groups (a card, an
// IBAN, a phone number), groups of digits and capitals after single separators.
func continuation(b []byte, open string) int {
	n := 0
	if !numberType(open) {
		for n < len(b) && tokenByte(b[n]) {
			n++
		}
		return n
	}
	for n < len(b) && n < numberRun {
		start := n
		if n > 0 || !(isDigit(b[0]) || isUpper(b[0])) {
			// A group after a single separator.
			if n+1 >= len(b) || strings.IndexByte(" -.)", b[n]) < 0 || !(isDigit(b[n+1]) || isUpper(b[n+1])) {
				break
			}
			n++
		}
		for n < len(b) && (isDigit(b[n]) || isUpper(b[n])) {
			n++
		}
		if n == start {
			break
		}
	}
	return n
}

// numberType reports whether matches of typ are numbers written in groups.
func numberType(typ string) bool { return typ == Card || typ == IBAN || typ == Phone }

func apply(b []byte, ms []Match, st style) []byte {
	if st == sameLength {
		out := append([]byte(nil), b...)
		for _, m := range ms {
			star(out[m.Start:m.End])
		}
		return out
	}
	out := make([]byte, 0, len(b)+16*len(ms))
	prev := 0
	for _, m := range ms {
		out = append(out, b[prev:m.Start]...)
		out = append(out, Token(m.Type)...)
		prev = m.End
	}
	return append(out, b[prev:]...)
}

// star overwrites every byte with '*' except line breaks, so a terminal's layout holds.
func star(b []byte) {
	for i, c := range b {
		if c != '\n' && c != '\r' {
			b[i] = '*'
		}
	}
}

// Text masks a free text (a stitched command line, a parameter) for target with the
// detectors and regex rules, in token style. It is the safety net applied to commands
// after stitching.
func (m *Masker) Text(target, s string, counts Counts) string {
	out := m.rules(target).text([]byte(s), token, counts)
	return string(out)
}

// Sorted returns the mask types of c in order (for stable output).
func (c Counts) Sorted() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// LoadConfig parses a YAML masking section on its own (for tests and tools).
func LoadConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, err
	}
	return c, nil
}
