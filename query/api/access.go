package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// caller is the verified identity behind a request.
type caller struct {
	auth.Identity
	auditor bool
	via     string // "console" when authenticated by the console's session cookie
}

// owns reports whether a session belongs to the caller: same subject at the same issuer.
func (c *caller) owns(s *schemas.Session) bool {
	return s.Subject == c.Subject && s.Issuer == c.Issuer
}

func (c *caller) canSee(s *schemas.Session) bool { return c.auditor || c.owns(s) }

// ConsoleHeader must accompany a cookie-authenticated request that is not a GET or
// HEAD. A cross-site form cannot set it, so the session cookie alone never makes a
// state-changing or costly request (SQL) on the user's behalf, on top of SameSite.
const ConsoleHeader = "X-Tapline-Console"

func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (*caller, bool) {
	verifier, token, via := s.credentials(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapline"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "a bearer token is required (Authorization: Bearer <token>), or log in to the console")
		return nil, false
	}
	if via == viaConsole && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(ConsoleHeader) == "" {
		writeError(w, http.StatusForbidden, "forbidden", "a console request needs the "+ConsoleHeader+" header")
		return nil, false
	}
	id, err := verifier.Verify(r.Context(), token)
	switch {
	case errors.Is(err, auth.ErrIssuerUnavailable):
		s.cfg.Logger.Error("token verification unavailable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the identity provider cannot be reached; try again later")
		return nil, false
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapline", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", err.Error())
		return nil, false
	}
	return &caller{Identity: id, auditor: id.InGroup(s.cfg.AuditorsGroup), via: via}, true
}

const viaConsole = "console"

// credentials picks the token of a request: the bearer token, else the console's
// session cookie (an ID token checked by its own verifier, whose audience is the
// console's client id).
func (s *server) credentials(r *http.Request) (Verifier, string, string) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
		return s.auth, strings.TrimSpace(token), ""
	}
	if s.cfg.SessionCookie == "" || s.cfg.SessionVerifier == nil {
		return nil, "", ""
	}
	c, err := r.Cookie(s.cfg.SessionCookie)
	if err != nil || c.Value == "" {
		return nil, "", ""
	}
	return s.cfg.SessionVerifier, c.Value, viaConsole
}

// errNotVisible marks a session that exists but belongs to someone else. It is only
// ever logged: the response is the same as for a session that does not exist.
var errNotVisible = errors.New("session of another subject")

// session loads a session the caller may see. A session whose summary has not been
// stored yet (the processors lag a live session) is described from its session.start
// frame, so its owner can follow it from the first frame.
func (s *server) session(w http.ResponseWriter, r *http.Request, c *caller) (schemas.Session, bool) {
	id := r.PathValue("id")
	recordOf(r.Context()).sessionID = id
	sess, err := s.store.GetSession(r.Context(), id)
	if errors.Is(err, clickhouse.ErrNotFound) {
		sess, err = s.sessionFromStart(r, id)
	}
	if err == nil && !c.canSee(&sess) {
		err = errNotVisible
	}
	switch {
	case errors.Is(err, clickhouse.ErrNotFound) || errors.Is(err, errNotVisible):
		recordOf(r.Context()).denied = errors.Is(err, errNotVisible)
		notFound(w)
		return sess, false
	case err != nil:
		s.internal(w, r, err)
		return sess, false
	}
	return sess, true
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "session not found")
}

func (s *server) sessionFromStart(r *http.Request, id string) (schemas.Session, error) {
	var sess schemas.Session
	found := false
	err := s.store.Frames(r.Context(), id, 0, 0, func(f *schemas.Frame) error {
		if f.Start == nil {
			return nil
		}
		st := f.Start
		found = true
		sess = schemas.Session{
			SessionID: f.SessionID, Protocol: f.Protocol, Target: st.Target, GatewayID: f.GatewayID,
			Issuer: st.Issuer, Subject: st.Subject, Email: st.Email, Name: st.Name, Groups: st.Groups,
			TokenID: st.TokenID, ClientAddr: st.ClientAddr, StartedAt: f.TS, Status: schemas.StatusActive,
			LastSeq: f.Seq,
		}
		if f.Kind == schemas.KindSessionDenied {
			sess.Status = schemas.StatusDenied
		}
		return nil
	})
	if err == nil && !found {
		err = clickhouse.ErrNotFound
	}
	return sess, err
}

// Me is the caller as the API sees it: GET /api/v1/me.
type Me struct {
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	Groups    []string  `json:"groups"`
	Auditor   bool      `json:"auditor"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *server) me(w http.ResponseWriter, _ *http.Request, c *caller) {
	writeJSON(w, http.StatusOK, Me{Issuer: c.Issuer, Subject: c.Subject, Email: c.Email, Name: c.Name,
		Groups: nonNil(c.Groups), Auditor: c.auditor, ExpiresAt: c.Expiry})
}
