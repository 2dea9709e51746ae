package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

var (
	// ErrUnknownTarget: the agent asked for a target the gateway does not serve.
	ErrUnknownTarget = errors.New("unknown target")
	// ErrForbidden: the target exists but the identity is in none of its groups.
	ErrForbidden = errors.New("forbidden")
)

// AnyGroup in a target's group list admits every verified identity.
const AnyGroup = "*"

// Policy maps target names to the groups allowed to use them. The zero value
// allows nothing.
type Policy struct {
	targets map[string][]string
}

// NewPolicy copies targets, so later changes to the map do not affect the policy.
// A target with an empty list admits nobody; AnyGroup admits everybody verified.
func NewPolicy(targets map[string][]string) Policy {
	p := Policy{targets: make(map[string][]string, len(targets))}
	for name, groups := range targets {
		p.targets[name] = slices.Clone(groups)
	}
	return p
}

// Allow returns nil if id may use target. Errors name only the requested target
// and its groups, never other targets, so a denial does not map the estate.
func (p Policy) Allow(target string, id Identity) error {
	groups, ok := p.targets[target]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownTarget, target)
	}
	for _, g := range groups {
		if g == AnyGroup || id.InGroup(g) {
			return nil
		}
	}
	if len(groups) == 0 {
		return fmt.Errorf("%w: target %q admits no groups", ErrForbidden, target)
	}
	return fmt.Errorf("%w: target %q requires membership in one of [%s]; %q is in none of them",
		ErrForbidden, target, strings.Join(groups, ", "), id.Subject)
}
