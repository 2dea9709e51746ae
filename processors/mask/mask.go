// Package mask removes secrets and personal data from recorded frames before they
// leave the restricted raw topic: built-in detectors (emails, card numbers with a Luhn
// check, US social security numbers, IBANs with a mod-97 check, phone numbers, JWTs,
// cloud keys, API tokens, private key blocks, passwords in SQL and in connection
// strings), Postgres column and parameter rules, regex rules, and HTTP header and JSON
// field rules, configured per target.
//
// A masked frame keeps valid protocol framing, records what was masked (counts by
// type, never the value) and drops its payload salt; its digest and chain hashes are
// left alone, so the hash chain still verifies (see schemas.CheckLink).
package mask

import (
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Frame masks f in place under target's rules and returns what it masked (nil when
// nothing). Lifecycle frames are never masked. conv is the session's conversation
// (nil for a protocol without one): it masks its frames field by field with the
// target's rules; without one the payload is masked with the detectors as text.
func (m *Masker) Frame(f *schemas.Frame, target string, conv protocol.Conversation) Counts {
	if f.IsLifecycle() || len(f.Payload) == 0 {
		return nil
	}
	t := m.rules(target)
	counts := Counts{}
	var out []byte
	if conv != nil {
		out = conv.Mask(f, rulesView{t}, protocol.Counts(counts))
	} else {
		out = t.text(f.Payload, sameLength, counts)
	}
	if len(counts) == 0 {
		return nil
	}
	f.Payload = out
	f.PayloadSalt = nil
	if f.Masks == nil {
		f.Masks = map[string]int64{}
	}
	for k, v := range counts {
		f.Masks[k] += v
	}
	return counts
}

// Rules returns target's rules as protocol packages apply them.
func (m *Masker) Rules(target string) protocol.MaskRules { return rulesView{m.rules(target)} }

// rulesView is a target's rules seen through protocol.MaskRules.
type rulesView struct{ t *targetRules }

func (r rulesView) Text(b []byte, st protocol.Style, counts protocol.Counts) []byte {
	s := token
	if st == protocol.SameLength {
		s = sameLength
	}
	return r.t.text(b, s, Counts(counts))
}

func (r rulesView) Stream(prev, b []byte, open string, st protocol.Style, counts protocol.Counts) protocol.Streamed {
	s := token
	if st == protocol.SameLength {
		s = sameLength
	}
	return r.t.stream(prev, b, open, s, Counts(counts))
}

func (r rulesView) Column(name string) bool    { return r.t.maskColumn(name) }
func (r rulesView) Param(i int) bool           { return r.t.maskParam(i) }
func (r rulesView) Header(name string) bool    { return r.t.headers[name] }
func (r rulesView) JSONField(name string) bool { return r.t.jsonFields[name] }
func (r rulesView) TableColumns(schema, table string) ([]string, bool) {
	return r.t.tableColumns(schema, table)
}
