package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyAllow(t *testing.T) {
	targets := map[string][]string{
		"orders-db":    {"dba", "sre"},
		"secret-vault": {"vault-admins"},
		"sandbox":      {AnyGroup},
		"retired":      {},
	}
	p := NewPolicy(targets)
	targets["orders-db"] = append(targets["orders-db"], "everyone") // must not leak into p

	alice := Identity{Subject: "alice", Groups: []string{"sre"}}
	bob := Identity{Subject: "bob", Groups: []string{"everyone"}}
	nobody := Identity{Subject: "ci"}

	allowed := []struct {
		target string
		id     Identity
	}{
		{"orders-db", alice},
		{"sandbox", nobody},
	}
	for _, a := range allowed {
		if err := p.Allow(a.target, a.id); err != nil {
			t.Errorf("%s on %s: %v", a.id.Subject, a.target, err)
		}
	}

	denied := []struct {
		target string
		id     Identity
		kind   error
		want   string
	}{
		{"orders-db", bob, ErrForbidden, `target "orders-db" requires membership in one of [dba, sre]; "bob" is in none`},
		{"orders-db", nobody, ErrForbidden, "[dba, sre]"},
		{"retired", alice, ErrForbidden, `target "retired" admits no groups`},
		{"billing-db", alice, ErrUnknownTarget, `unknown target "billing-db"`},
	}
	for _, d := range denied {
		err := p.Allow(d.target, d.id)
		if !errors.Is(err, d.kind) || !strings.Contains(err.Error(), d.want) {
			t.Errorf("%s on %s: err = %v, want %v containing %q", d.id.Subject, d.target, err, d.kind, d.want)
			continue
		}
		for other := range targets {
			if other != d.target && strings.Contains(err.Error(), other) {
				t.Errorf("denial for %s leaks other target %q: %v", d.target, other, err)
			}
		}
		if strings.Contains(err.Error(), "vault-admins") {
			t.Errorf("denial leaks another target's groups: %v", err)
		}
	}
}

func TestZeroPolicyAllowsNothing(t *testing.T) {
	var p Policy
	if err := p.Allow("anything", Identity{Subject: "a", Groups: []string{"dba"}}); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("err = %v", err)
	}
}
