package auth

import (
	"errors"
	"strings"
	"testing"
)

// FuzzTokenShape runs the checks every presented token meets before any parsing
// or network use: whatever an unauthenticated client sends, they either pass a
// compact JWS with an accepted alg or refuse it as ErrInvalidToken, never panic.
func FuzzTokenShape(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJhIn0.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("a.b.c.d.e")
	f.Add("hunter2")
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.e30")
	v := &Verifier{algs: []string{"RS256", "ES256"}}
	f.Fuzz(func(t *testing.T, raw string) {
		err := checkShape(raw)
		if err == nil {
			err = v.checkAlg(raw)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("%q: error %v is not ErrInvalidToken", raw, err)
			}
			return
		}
		if strings.Count(raw, ".") != 2 || len(raw) > maxTokenLen {
			t.Fatalf("%q passed the shape checks", raw)
		}
	})
}
