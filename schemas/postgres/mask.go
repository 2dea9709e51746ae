package postgres

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Mask types this package counts, besides the detectors' own.
const (
	MaskColumn = "column" // a value by the column it is read from or written to
	MaskParam  = "param"  // a Bind parameter by position or by the column it binds
	MaskAuth   = "auth"   // a password or SASL message
)

// Kinds of the authentication messages masked whole, besides PasswordMessage.
const (
	saslInitialResponse = "SASLInitialResponse"
	saslResponse        = "SASLResponse"
	gssResponse         = "GSSResponse"
)

// MaxMaskedPayload bounds a masked payload: a token-style rewrite that would grow a
// message past it is redone in same-length style so the frame still fits a Kafka
// record.
const MaxMaskedPayload = 900 << 10

// Mask implements protocol.Conversation. Whole messages are decoded and re-encoded
// with correct lengths; fragments of a larger message are masked in place, same
// length.
func (c *Conversation) Mask(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	if f.Fragment > 0 || !f.Final {
		return c.maskFragment(f, r, counts)
	}
	c.Walk = nil
	m := masker{r: r, c: c, st: protocol.Token}
	out, got, err := m.message(f.Kind, f.Payload)
	if err != nil {
		// Not a well-formed message of its kind: mask what the detectors find without
		// touching any length field, so the recorded bytes stay what was sent.
		got = protocol.Counts{}
		out = opaque(f.Payload, r, got)
	}
	if len(out) > MaxMaskedPayload && len(out) > len(f.Payload) {
		m.st = protocol.SameLength
		out, got, _ = m.message(f.Kind, f.Payload)
	}
	for k, v := range got {
		counts.Add(k, v)
	}
	c.afterMask(f)
	return out
}

// opaque masks the body of a message that did not decode, in place.
func opaque(p []byte, r protocol.MaskRules, counts protocol.Counts) []byte {
	body := Body(p)
	if len(body) == 0 {
		return p
	}
	n := len(counts)
	body = r.Text(body, protocol.SameLength, counts)
	if len(counts) == n {
		return p
	}
	return append(append([]byte{}, p[:HeaderLen]...), body...)
}

// masker masks one whole message.
type masker struct {
	r  protocol.MaskRules
	c  *Conversation
	st protocol.Style
}

type codec interface {
	Decode([]byte) error
	Encode([]byte) ([]byte, error)
}

func (m masker) text(s string, counts protocol.Counts) string {
	return string(m.r.Text([]byte(s), m.st, counts))
}

func (m masker) message(kind string, p []byte) ([]byte, protocol.Counts, error) {
	counts := protocol.Counts{}
	if len(p) < HeaderLen {
		return p, counts, nil
	}
	body, err := CheckedBody(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", kind, err)
	}
	var msg codec
	switch kind {
	case Query:
		q := &pgproto3.Query{}
		msg = q
		if err := Decode(q, body); err != nil {
			return nil, nil, err
		}
		q.String = m.sql(q.String, Query, counts)
	case Parse:
		q := &pgproto3.Parse{}
		msg = q
		if err := Decode(q, body); err != nil {
			return nil, nil, err
		}
		q.Query = m.sql(q.Query, Parse, counts)
	case Bind:
		b := &pgproto3.Bind{}
		msg = b
		if err := Decode(b, body); err != nil {
			return nil, nil, err
		}
		m.bind(b, counts)
	case DataRow:
		d := &pgproto3.DataRow{}
		msg = d
		if err := Decode(d, body); err != nil {
			return nil, nil, err
		}
		m.dataRow(d, counts)
	case CopyData:
		d := &pgproto3.CopyData{}
		msg = d
		if err := Decode(d, body); err != nil {
			return nil, nil, err
		}
		d.Data = m.copyData(d.Data, counts)
	case ErrorResponse, NoticeResponse:
		e := &pgproto3.ErrorResponse{}
		if err := Decode(e, body); err != nil {
			return nil, nil, err
		}
		for _, s := range []*string{&e.Message, &e.Detail, &e.Hint, &e.Where, &e.InternalQuery} {
			*s = m.text(*s, counts)
		}
		msg = e
		if kind == NoticeResponse {
			msg = (*pgproto3.NoticeResponse)(e)
		}
	case PasswordMessage:
		counts.Add(MaskAuth, 1)
		msg = &pgproto3.PasswordMessage{Password: replacement(MaskAuth, m.st, len(body)-1)}
	case saslInitialResponse:
		s := &pgproto3.SASLInitialResponse{}
		if err := Decode(s, body); err != nil {
			return nil, nil, err
		}
		counts.Add(MaskAuth, 1)
		s.Data = []byte(replacement(MaskAuth, m.st, len(s.Data)))
		msg = s
	case saslResponse, gssResponse:
		counts.Add(MaskAuth, 1)
		rep := replacement(MaskAuth, m.st, len(body))
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
func replacement(typ string, st protocol.Style, n int) string {
	if st == protocol.SameLength {
		return strings.Repeat("*", max(n, 0))
	}
	return Token(typ)
}

// Token is what replaces a masked value where the length may change.
func Token(typ string) string { return "[masked:" + typ + "]" }

func (m masker) dataRow(d *pgproto3.DataRow, counts protocol.Counts) {
	cols := m.c.RowColumns()
	for i, v := range d.Values {
		if v == nil {
			continue
		}
		if i < len(cols) && m.r.Column(cols[i]) {
			counts.Add(MaskColumn, 1)
			d.Values[i] = []byte(replacement(MaskColumn, m.st, len(v)))
			continue
		}
		d.Values[i] = m.r.Text(v, m.valueStyle(utf8.Valid(v)), counts)
	}
}

// valueStyle: a value that is not UTF-8 text (a binary-format value, a bytea
// holding a file, Latin-1 text from a SQL_ASCII database) still goes through
// the detectors, since a secret's text may sit inside it, but keeps its
// length, as values cut by a fragment boundary do.
func (m masker) valueStyle(text bool) protocol.Style {
	if text {
		return m.st
	}
	return protocol.SameLength
}

func (m masker) bind(b *pgproto3.Bind, counts protocol.Counts) {
	ruled := m.c.boundParams(b.PreparedStatement, len(b.Parameters), m.r)
	for i, v := range b.Parameters {
		if v == nil {
			continue
		}
		if ruled[i] != "" {
			counts.Add(ruled[i], 1)
			b.Parameters[i] = []byte(replacement(ruled[i], m.st, len(v)))
			continue
		}
		text := FormatCode(b.ParameterFormatCodes, i) == 0 && utf8.Valid(v)
		b.Parameters[i] = m.r.Text(v, m.valueStyle(text), counts)
	}
}

// boundParams says which of a Bind's n parameters are masked whole, and as what
// type ("" for none): by position, by the column the statement binds them to, or by
// their position in the rows of the table a positional INSERT fills.
func (c *Conversation) boundParams(stmt string, n int, r protocol.MaskRules) []string {
	var refs paramRefs
	if sql, ok := c.StatementText(stmt); ok {
		refs = paramColumns(sql, r)
	}
	out := make([]string, n)
	for i := range n {
		if p, ok := refs.pos[i]; ok {
			if typ, masked := positionalRule(r, p); masked {
				out[i] = MaskParam // a ruled column's value, bound: counted as a parameter
				if typ == MaskPositional {
					out[i] = MaskPositional
				}
				continue
			}
		}
		if col := refs.cols[i]; r.Param(i) || (col != "" && r.Column(col)) {
			out[i] = MaskParam
		}
	}
	return out
}
