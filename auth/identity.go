// Package auth verifies the OIDC tokens agents present to the edge proxies and the
// query API, and decides which targets an identity may use.
//
// A proxy calls Verifier.Verify with the token taken from its protocol (Postgres
// password, SSH password or keyboard-interactive answer, HTTP bearer), then
// Policy.Allow with the target the agent asked for. Errors are classified with
// errors.Is (ErrInvalidToken, ErrExpired, ErrIssuerUnavailable, ErrUnknownTarget,
// ErrForbidden) and carry a reason fit to show the agent in the protocol's own error.
package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Identity is who presented a token. It is recorded in session.start.
type Identity struct {
	Issuer, Subject, Email, Name string
	Groups                       []string
	TokenID                      string // jti
	Expiry                       time.Time
}

// InGroup reports whether the identity is a member of group.
func (id Identity) InGroup(group string) bool { return slices.Contains(id.Groups, group) }

// profileClaims are the claims read besides those go-oidc already parses.
type profileClaims struct {
	Email             string       `json:"email"`
	Name              string       `json:"name"`
	PreferredUsername string       `json:"preferred_username"`
	JTI               string       `json:"jti"`
	NotBefore         *json.Number `json:"nbf"`
}

// groupsFrom reads the groups claim: absent means no groups, a string is one group,
// an array must hold only strings. Anything else is a misconfigured IdP or claim name,
// and failing loudly beats silently granting nothing (or the wrong thing).
func groupsFrom(claims map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok := claims[name]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("claim %q must be a string or an array of strings", name)
	}
	return many, nil
}
