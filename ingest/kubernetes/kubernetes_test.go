package kubernetes

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/tapline/tapline/auth"
)

func TestImpersonation(t *testing.T) {
	id := auth.Identity{Subject: "agent-7", Email: "a7@example.com", Groups: []string{"ops", "oncall"}}
	cases := []struct {
		name   string
		m      Impersonation
		user   string
		groups []string
	}{
		{"default", Impersonation{}, "agent-7", []string{"ops", "oncall"}},
		{"email with prefixes", Impersonation{User: "email", UserPrefix: "tapline:", GroupPrefix: "tapline:", ExtraGroups: []string{"agents"}},
			"tapline:a7@example.com", []string{"tapline:ops", "tapline:oncall", "agents"}},
		{"off", Impersonation{Disabled: true}, "", nil},
	}
	for _, c := range cases {
		out := httptest.NewRequest("GET", "/api/v1/pods", nil)
		if err := c.m.Outbound(out, id); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := out.Header.Get("Impersonate-User"); got != c.user {
			t.Errorf("%s: user %q, want %q", c.name, got, c.user)
		}
		if got := out.Header.Values("Impersonate-Group"); !slices.Equal(got, c.groups) {
			t.Errorf("%s: groups %q, want %q", c.name, got, c.groups)
		}
	}
}

// An agent's own --as is refused whatever the mapping: the gateway's right to
// impersonate must not become the agent's.
func TestAgentImpersonationRefused(t *testing.T) {
	for _, h := range []string{"Impersonate-User", "impersonate-group", "Impersonate-Uid", "Impersonate-Extra-Scopes"} {
		for _, m := range []Impersonation{{}, {Disabled: true}} {
			out := httptest.NewRequest("GET", "/api/v1/pods", nil)
			out.Header[h] = []string{"system:admin"}
			if err := m.Outbound(out, auth.Identity{Subject: "a"}); !errors.Is(err, ErrAgentImpersonation) {
				t.Errorf("%s (disabled=%v): %v", h, m.Disabled, err)
			}
		}
	}
}

func TestWriteStatus(t *testing.T) {
	w := httptest.NewRecorder()
	WriteStatus(w, http.StatusForbidden, "tapline: you may not use target prod")
	var s Status
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if w.Code != 403 || s.Kind != "Status" || s.Reason != "Forbidden" || s.Code != 403 || s.Message == "" {
		t.Fatalf("status %d: %+v", w.Code, s)
	}
}

// The API server unreachable is ServiceUnavailable to kubectl, not a bad gateway.
func TestRefuseUnreachableIsServiceUnavailable(t *testing.T) {
	code, ctype, body := Refuse(http.StatusBadGateway, "tapline: target c: cannot connect")
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if code != 503 || ctype != "application/json" || s.Code != 503 || s.Reason != "ServiceUnavailable" {
		t.Fatalf("%d %s %+v", code, ctype, s)
	}
}
