// Package kubernetes is the Kubernetes API edge: the HTTP edge (ingest/http)
// with the agent's identity carried to the API server by impersonation, so the
// cluster's own RBAC and audit log see who acted, and errors answered as the
// Status objects kubectl prints.
package kubernetes

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/tapline/tapline/auth"
)

// Impersonation maps an agent's identity to the Impersonate-* headers.
type Impersonation struct {
	// Disabled sends requests as the gateway's own identity (a target may turn
	// impersonation off; the cluster then sees only the gateway).
	Disabled bool `yaml:"disabled"`
	// User names the claim sent as Impersonate-User: "subject" (default) or "email".
	User string `yaml:"user"`
	// UserPrefix and GroupPrefix are prepended ("tapline:"), so RBAC can tell
	// agents from the cluster's own users.
	UserPrefix  string `yaml:"user_prefix"`
	GroupPrefix string `yaml:"group_prefix"`
	// ExtraGroups are sent for every agent (e.g. "tapline:agents").
	ExtraGroups []string `yaml:"extra_groups"`
}

// Validate checks the mapping.
func (m *Impersonation) Validate() error {
	switch m.User {
	case "", "subject", "email":
		return nil
	}
	return errors.New(`kubernetes: impersonation.user must be "subject" or "email"`)
}

// ErrAgentImpersonation refuses a request that tries to impersonate by itself.
var ErrAgentImpersonation = errors.New("Impersonate-* headers are not accepted: the gateway impersonates your own identity; drop --as/--as-group")

// Outbound adjusts a request to the API server: it refuses agent-sent
// Impersonate-* headers (they would let an agent act as anyone the gateway may
// impersonate) and adds the agent's identity. It fits httpproxy.Options.Outbound.
func (m *Impersonation) Outbound(out *http.Request, id auth.Identity) error {
	for name := range out.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "Impersonate-") {
			return ErrAgentImpersonation
		}
	}
	if m.Disabled {
		return nil
	}
	user := id.Subject
	if m.User == "email" {
		user = id.Email
	}
	if user == "" {
		return errors.New("your token has no " + m.userClaim() + " claim to impersonate; ask for a token that carries it")
	}
	out.Header.Set("Impersonate-User", m.UserPrefix+user)
	for _, g := range id.Groups {
		out.Header.Add("Impersonate-Group", m.GroupPrefix+g)
	}
	for _, g := range m.ExtraGroups {
		out.Header.Add("Impersonate-Group", g)
	}
	return nil
}

func (m *Impersonation) userClaim() string {
	if m.User == "email" {
		return "email"
	}
	return "subject"
}

// Status is the part of a metav1.Status kubectl prints.
type Status struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason"`
	Code       int    `json:"code"`
}

// reasons are the StatusReason values kubectl knows for the codes the gateway answers.
var reasons = map[int]string{
	http.StatusUnauthorized:       "Unauthorized",
	http.StatusForbidden:          "Forbidden",
	http.StatusBadRequest:         "BadRequest",
	http.StatusServiceUnavailable: "ServiceUnavailable",
	http.StatusBadGateway:         "InternalError",
	http.StatusGatewayTimeout:     "Timeout",
	http.StatusRequestTimeout:     "Timeout",
	http.StatusTooManyRequests:    "TooManyRequests",
	http.StatusNotFound:           "NotFound",
}

// Refuse renders a refusal by the gateway as a Status. The API server being
// unreachable or its TLS refused (502 at the HTTP edge) becomes 503
// ServiceUnavailable, as the cluster's own aggregation layer answers, so
// clients treat it as a server that is down rather than a broken one.
func Refuse(code int, message string) (int, string, []byte) {
	if code == http.StatusBadGateway {
		code = http.StatusServiceUnavailable
	}
	return code, "application/json", statusBody(code, message)
}

func statusBody(code int, message string) []byte {
	reason := reasons[code]
	if reason == "" {
		reason = "InternalError"
	}
	b, _ := json.Marshal(Status{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: message, Reason: reason, Code: code})
	return b
}

// WriteStatus answers with a Status object, which kubectl prints as
// "error: You must be logged in to the server (<message>)" for 401 and as
// "Error from server (<Reason>): <message>" otherwise.
func WriteStatus(w http.ResponseWriter, code int, message string) {
	b := statusBody(code, message)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
