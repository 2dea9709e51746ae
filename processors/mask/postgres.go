package mask

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
)

// PGContext is what the masker needs to know about a Postgres conversation at the
// current frame: the columns of the DataRows now arriving (from the RowDescription
// that describes them, whether it came inline or from an earlier Describe) and the
// text of prepared statements (to map Bind parameters to columns). The stitcher keeps
// this state; the masker only reads it.
type PGContext interface {
	// RowColumns returns the names of the columns of the DataRows arriving now, or nil.
	RowColumns() []string
	// StatementText returns the text of the prepared statement named name.
	StatementText(name string) (string, bool)
}

// MaxPayload bounds a masked payload: a token-style rewrite that would grow a message
// past it is redone in same-length style so the frame still fits a Kafka record.
const MaxPayload = 900 << 10

// postgres masks one Postgres frame. Whole messages are decoded and re-encoded with
// correct lengths; fragments of a larger message are masked in place, same length.
func (t *targetRules) postgres(f *schemas.Frame, st *State, pg PGContext, counts Counts) []byte {
	if f.Fragment > 0 || !f.Final {
		return t.pgFragment(f, st, pg, counts)
	}
	st.Walk = nil
	out, c, err := t.pgMessage(f.Kind, f.Payload, pg, token)
	if err != nil {
		// Not a well-formed message of its kind: mask what the detectors find without
		// touching any length field, so the recorded bytes stay what was sent.
		c = Counts{}
		out = t.pgOpaque(f.Payload, c)
	}
	if len(out) > MaxPayload && len(out) > len(f.Payload) {
		out, c, _ = t.pgMessage(f.Kind, f.Payload, pg, sameLength)
	}
	counts.merge(c)
	return out
}

// pgOpaque masks the body of a message that did not decode, in place.
func (t *targetRules) pgOpaque(p []byte, counts Counts) []byte {
	body := pgwire.Body(p)
	if len(body) == 0 {
		return p
	}
	body = t.text(body, sameLength, counts)
	if len(counts) == 0 {
		return p
	}
	return append(append([]byte{}, p[:pgwire.HeaderLen]...), body...)
}

func (t *targetRules) pgMessage(kind string, p []byte, pg PGContext, st style) ([]byte, Counts, error) {
	counts := Counts{}
	if len(p) < pgwire.HeaderLen {
		return p, counts, nil
	}
	body, err := pgwire.CheckedBody(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", kind, err)
	}
	var msg interface {
		Decode([]byte) error
		Encode([]byte) ([]byte, error)
	}
	switch kind {
	case pgwire.Query:
		m := &pgproto3.Query{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		m.String = string(t.text([]byte(m.String), st, counts))
		msg = m
	case pgwire.Parse:
		m := &pgproto3.Parse{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		m.Query = string(t.text([]byte(m.Query), st, counts))
		msg = m
	case pgwire.Bind:
		m := &pgproto3.Bind{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		t.bindParams(m, pg, st, counts)
		msg = m
	case pgwire.DataRow:
		m := &pgproto3.DataRow{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		t.dataRow(m, pg, st, counts)
		msg = m
	case pgwire.CopyData:
		m := &pgproto3.CopyData{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		// Same length: in binary COPY each field is length-prefixed inside the data.
		m.Data = t.text(m.Data, sameLength, counts)
		msg = m
	case pgwire.ErrorResponse:
		m := &pgproto3.ErrorResponse{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		for _, s := range []*string{&m.Message, &m.Detail, &m.Hint, &m.Where, &m.InternalQuery} {
			*s = string(t.text([]byte(*s), st, counts))
		}
		msg = m
	case pgwire.NoticeResponse:
		m := &pgproto3.NoticeResponse{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		for _, s := range []*string{&m.Message, &m.Detail, &m.Hint, &m.Where, &m.InternalQuery} {
			*s = string(t.text([]byte(*s), st, counts))
		}
		msg = m
	case pgwire.PasswordMessage:
		counts.add(AuthMessage, 1)
		msg = &pgproto3.PasswordMessage{Password: replacement(AuthMessage, st, len(body)-1)}
	case "SASLInitialResponse":
		m := &pgproto3.SASLInitialResponse{}
		if err := pgwire.Decode(m, body); err != nil {
			return nil, nil, err
		}
		counts.add(AuthMessage, 1)
		m.Data = []byte(replacement(AuthMessage, st, len(m.Data)))
		msg = m
	case "SASLResponse", "GSSResponse":
		counts.add(AuthMessage, 1)
		rep := replacement(AuthMessage, st, len(body))
		out := binary.BigEndian.AppendUint32([]byte{p[0]}, uint32(4+len(rep)))
		return append(out, rep...), counts, nil
	default:
		return p, counts, nil
	}
	if len(counts) == 0 {
		return p, counts, nil
	}
	out, err := msg.Encode(nil)
	return out, counts, err
}

// replacement is the masked form of a value of length n.
func replacement(typ string, st style, n int) string {
	if st == sameLength {
		return strings.Repeat("*", max(n, 0))
	}
	return Token(typ)
}

func (t *targetRules) dataRow(m *pgproto3.DataRow, pg PGContext, st style, counts Counts) {
	var cols []string
	if pg != nil {
		cols = pg.RowColumns()
	}
	for i, v := range m.Values {
		if v == nil {
			continue
		}
		if i < len(cols) && t.maskColumn(cols[i]) {
			counts.add(Column, 1)
			m.Values[i] = []byte(replacement(Column, st, len(v)))
			continue
		}
		if utf8.Valid(v) {
			m.Values[i] = t.text(v, st, counts)
		}
	}
}

func (t *targetRules) bindParams(m *pgproto3.Bind, pg PGContext, st style, counts Counts) {
	var byCol map[int]string
	if pg != nil {
		if sql, ok := pg.StatementText(m.PreparedStatement); ok {
			byCol = ParamColumns(sql)
		}
	}
	for i, v := range m.Parameters {
		if v == nil {
			continue
		}
		if t.maskParam(i) || (byCol[i] != "" && t.maskColumn(byCol[i])) {
			counts.add(Param, 1)
			m.Parameters[i] = []byte(replacement(Param, st, len(v)))
			continue
		}
		if pgwire.FormatCode(m.ParameterFormatCodes, i) == 0 {
			m.Parameters[i] = t.text(v, st, counts)
		}
	}
}

var (
	paramCmpRe    = regexp.MustCompile(`(?i)([a-z_][a-z0-9_$]*"?)\s*(?:=|<>|!=|\blike\b|\bilike\b)\s*\$(\d+)\b`)
	paramInsertRe = regexp.MustCompile(`(?is)\binsert\s+into\s+[^\s(]+\s*\(([^)]*)\)\s*values\s*\(([^)]*)\)`)
)

// ParamColumns maps Bind parameters (0-based) to the column a statement compares
// them with (col = $n, col LIKE $n) or inserts them into (INSERT INTO t (a, b)
// VALUES ($1, $2)), so column rules also cover parameters. Best effort: statements
// it does not understand map nothing.
func ParamColumns(sql string) map[int]string {
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
