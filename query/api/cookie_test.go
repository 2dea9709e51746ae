package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
)

const consoleClient = "tapline-console"

// cookieEnv serves the API with the console's session cookie accepted: ID tokens
// whose audience is the console's client id.
func cookieEnv(t *testing.T) *env {
	t.Helper()
	cfg := Config{SessionCookie: "tapline_session"}
	// The session verifier needs the issuer newEnv starts; a lazy one resolves it.
	lazy := &lazyVerifier{}
	cfg.SessionVerifier = lazy
	e := newEnv(t, cfg)
	v, err := auth.NewVerifier(context.Background(), auth.Config{Issuer: e.iss.URL(), Audience: consoleClient})
	if err != nil {
		t.Fatal(err)
	}
	lazy.v = v
	return e
}

type lazyVerifier struct{ v *auth.Verifier }

func (l *lazyVerifier) Verify(ctx context.Context, tok string) (auth.Identity, error) {
	return l.v.Verify(ctx, tok)
}

func (e *env) cookieDo(cookie, method, path, body string, header map[string]string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "tapline_session", Value: cookie})
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestConsoleCookieFollowsTheAccessRules(t *testing.T) {
	e := cookieEnv(t)
	mine, theirs := e.pgSession("alice", e.iss.URL()), e.pgSession("bob", e.iss.URL())
	e.record(mine, true)
	e.record(theirs, true)
	alice, err := e.iss.Mint("alice", nil, time.Hour, devissuer.WithAudience(consoleClient))
	if err != nil {
		t.Fatal(err)
	}

	if code, body := e.cookieDo(alice, "GET", "/api/v1/sessions/"+mine.ID, "", nil); code != http.StatusOK {
		t.Fatalf("own session by cookie: %d %s", code, body)
	}
	code, missingBody := e.cookieDo(alice, "GET", "/api/v1/sessions/00000000-0000-7000-8000-000000000000", "", nil)
	if code != http.StatusNotFound {
		t.Fatalf("missing session: %d", code)
	}
	code, otherBody := e.cookieDo(alice, "GET", "/api/v1/sessions/"+theirs.ID, "", nil)
	if code != http.StatusNotFound || otherBody != missingBody {
		t.Errorf("another user's session: %d %q, want the missing one's 404 %q", code, otherBody, missingBody)
	}
	var list SessionList
	_, body := e.cookieDo(alice, "GET", "/api/v1/sessions", "", nil)
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Sessions) != 1 || list.Sessions[0].SessionID != mine.ID {
		t.Errorf("list by cookie: %v %s", err, body)
	}

	// The cookie carries an ID token for the console: a gateway token in it is refused,
	// and a console token is no bearer token for the API.
	gw, _ := e.iss.Mint("alice", nil, time.Hour)
	if code, _ := e.cookieDo(gw, "GET", "/api/v1/sessions", "", nil); code != http.StatusUnauthorized {
		t.Errorf("gateway token in the cookie: %d, want 401", code)
	}
	if resp, _ := e.get(alice, "/api/v1/sessions"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("console ID token as bearer: %d, want 401", resp.StatusCode)
	}

	// Every console request is on the trail, marked as such.
	var via int
	for _, a := range e.access.all() {
		if a.Via == "console" && a.Subject == "alice" {
			via++
		}
	}
	if via < 4 {
		t.Errorf("%d console records on the access trail, want 4", via)
	}
}

func TestConsoleCookieAloneCannotPost(t *testing.T) {
	e := cookieEnv(t)
	auditor, err := e.iss.Mint("carol", []string{"auditors"}, time.Hour, devissuer.WithAudience(consoleClient))
	if err != nil {
		t.Fatal(err)
	}
	q := `{"query":"SELECT 1"}`
	json := map[string]string{"Content-Type": "application/json"}
	if code, body := e.cookieDo(auditor, "POST", "/api/v1/sql", q, json); code != http.StatusForbidden || !strings.Contains(body, ConsoleHeader) {
		t.Errorf("SQL by cookie without %s: %d %s, want 403", ConsoleHeader, code, body)
	}
	json[ConsoleHeader] = "1"
	if code, body := e.cookieDo(auditor, "POST", "/api/v1/sql", q, json); code != http.StatusOK {
		t.Errorf("SQL by cookie with %s: %d %s", ConsoleHeader, code, body)
	}
}
