package postgres

import (
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// BenchmarkMaskSQL is the cost of masking one Query: a statement naming a ruled
// column is parsed (the PostgreSQL grammar, run as WebAssembly), one naming none is
// only scanned for identifiers; the cached mapping of a prepared statement's
// parameters makes its Binds cheap.
func BenchmarkMaskSQL(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"ruled insert", `INSERT INTO users (id, email, password) VALUES (1, 'a@b.c', 'hunter2'), (2, 'x@y.z', 'pw2') ON CONFLICT (id) DO UPDATE SET password = EXCLUDED.password`},
		{"ruled where", `SELECT id FROM users WHERE ssn = '123-45-6789' AND id IN (1, 2, 3)`},
		{"positional insert", `INSERT INTO events VALUES (1, 'login', now(), '10.0.0.1')`},
		{"unruled", `SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.created_at > now() - interval '1 day'`},
	} {
		p := msg(b, &pgproto3.Query{String: bc.sql})
		b.Run(bc.name, func(b *testing.B) {
			c := &Conversation{}
			c.Mask(frame(Query, schemas.Client, p), rules, protocol.Counts{}) // instantiate the parser
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for range b.N {
				c.Mask(frame(Query, schemas.Client, p), rules, protocol.Counts{})
			}
		})
	}
	b.Run("bind of ruled statement", func(b *testing.B) {
		c := &Conversation{}
		c.Stitch(frame(Parse, schemas.Client, msg(b, &pgproto3.Parse{Name: "s", Query: `UPDATE u SET password = $1 WHERE id = $2`})), protocol.Limits{})
		p := msg(b, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("hunter2"), []byte("7")}})
		b.ResetTimer()
		for range b.N {
			c.Mask(frame(Bind, schemas.Client, p), rules, protocol.Counts{})
		}
	})
}
