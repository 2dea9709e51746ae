package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/query/memstore"
)

type env struct {
	t       *testing.T
	iss     *devissuer.Issuer
	console *httptest.Server
}

// newEnv serves the console around the API with an in-memory store, logging in
// against the dev issuer over real HTTP.
func newEnv(t *testing.T) *env {
	t.Helper()
	iss, err := devissuer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go iss.Serve(ctx, "")
	waitReachable(t, iss.URL()+"/.well-known/openid-configuration")
	oidc := auth.Config{Issuer: iss.URL(), Audience: devissuer.QueryAudience}
	v, err := auth.NewVerifier(ctx, oidc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(ctx, console.Config{ClientID: devissuer.ConsoleClient}, oidc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{SessionCookie: console.CookieName, SessionVerifier: c.Verifier()}
	srv := httptest.NewServer(c.Handler(api.New(cfg, memstore.NewStore(), v)))
	t.Cleanup(srv.Close)
	return &env{t: t, iss: iss, console: srv}
}

func waitReachable(t *testing.T, u string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not reachable", u)
}

func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hidden = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// login walks the browser flow: console → dev issuer's page → form → callback.
func (e *env) login(c *http.Client, sub, groups string) *http.Response {
	e.t.Helper()
	resp, page := get(e.t, c, e.console.URL+"/auth/login?next=/sessions/x")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), e.iss.URL()+"/authorize") {
		e.t.Fatalf("login did not reach the issuer's page: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	form := url.Values{"subject": {sub}, "groups": {groups}}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	resp, err := c.PostForm(e.iss.URL()+"/authorize", form)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func TestLoginThroughTheDevIssuer(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	resp := e.login(c, "alice", "dev, auditors")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/auth/callback" {
		t.Fatalf("callback: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	u, _ := url.Parse(e.console.URL)
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	if session == nil {
		t.Fatalf("no %s cookie set; cookies %v", console.CookieName, c.Jar.Cookies(u))
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure {
		t.Errorf("cookie: HttpOnly=%v SameSite=%v Secure=%v, want HttpOnly, Strict, not Secure on loopback http",
			session.HttpOnly, session.SameSite, session.Secure)
	}
	if until := time.Until(session.Expires); until < devissuer.LoginTTL-time.Minute || until > devissuer.LoginTTL+time.Minute {
		t.Errorf("cookie expires in %s, want the token's %s", until, devissuer.LoginTTL)
	}

	resp, body := get(t, c, e.console.URL+"/api/v1/me")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"subject":"alice"`) || !strings.Contains(body, `"auditor":true`) {
		t.Fatalf("me after login: %d %s", resp.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodPost, e.console.URL+"/auth/logout", nil)
	req.Header.Set("X-Tapline-Console", "1")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %v %v", resp, err)
	}
	if resp, _ := get(t, c, e.console.URL+"/api/v1/me"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("me after logout: %d, want 401", resp.StatusCode)
	}
}

func TestCallbackRefusesAForeignState(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	// A callback the browser did not start (login CSRF) sets no session.
	resp, body := get(t, c, e.console.URL+"/auth/callback?code=abc&state=xyz")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "start again") {
		t.Errorf("foreign callback: %d %s", resp.StatusCode, body)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("cookies set: %v", resp.Cookies())
	}
}

func TestPagesCarryAStrictContentSecurityPolicy(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/", "/sessions/0190", "/sql", "/assets/app.js"} {
		resp, body := get(t, http.DefaultClient, e.console.URL+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';") || strings.Contains(csp, "unsafe-inline';") && strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
		if strings.HasSuffix(path, ".js") {
			continue
		}
		// Every script of the page is a file of this origin.
		for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
			if !strings.Contains(tag, `src="/assets/`) {
				t.Errorf("%s: inline or foreign script %s", path, tag)
			}
		}
		if strings.Contains(body, "//cdn") || strings.Contains(body, "https://") {
			t.Errorf("%s references another origin", path)
		}
	}
	// The API keeps answering bearer-token clients at its own paths.
	if resp, _ := get(t, http.DefaultClient, e.console.URL+"/api/v1/sessions"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without token: %d", resp.StatusCode)
	}
	tok, _ := e.iss.Mint("alice", nil, time.Hour, devissuer.WithAudience(devissuer.QueryAudience))
	req, _ := http.NewRequest(http.MethodGet, e.console.URL+"/api/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("API with a bearer token: %v %v", resp, err)
	}
}
