package postgres

import (
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

func init() { protocol.Register(Protocol{}) }

// Protocol is Postgres in the protocol registry.
type Protocol struct{}

// Name implements protocol.Protocol.
func (Protocol) Name() schemas.Protocol { return schemas.Postgres }

// Kinds implements protocol.Protocol.
func (Protocol) Kinds() []string {
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range []string{StartupMessage, SSLRequest, GSSENCRequest, CancelRequest, PasswordMessage} {
		add(k)
	}
	for _, m := range []map[byte]string{ClientKinds, ServerKinds} {
		for _, k := range m {
			add(k)
		}
	}
	for _, k := range AuthKinds {
		add(k)
	}
	return out
}

// OCSFClass implements protocol.Audited.
func (Protocol) OCSFClass() string { return "datastore" }

// WarmUp readies the SQL parser, so that the first statement naming a ruled
// column does not wait for it (protocol.Warming).
func (Protocol) WarmUp() { WarmUp() }
