package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tapline/tapline/auth"
)

const (
	loginCookie = "tapline_login"
	// loginTTL bounds how long a login may sit at the issuer's page.
	loginTTL = 10 * time.Minute
	// maxCookieToken: browsers drop cookies over about 4 KiB.
	maxCookieToken = 4000
	// APIHeader mirrors api.ConsoleHeader (the console does not import the API):
	// logout needs it like any cookie-authenticated POST.
	apiHeader = "X-Tapline-Console"
)

// login runs the authorization code flow with PKCE. Discovery is lazy and retried,
// so the query role can start before its identity provider.
type login struct {
	cfg      Config
	issuer   string
	client   *http.Client
	verifier *auth.Verifier

	mu       sync.Mutex
	provider *oidc.Provider
}

func newLogin(cfg Config, oidcCfg auth.Config, v *auth.Verifier) (*login, error) {
	if cfg.RedirectURL != "" {
		u, err := url.Parse(cfg.RedirectURL)
		if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname()))) {
			return nil, fmt.Errorf("console: redirect_url %q must be an https URL (http only on loopback)", cfg.RedirectURL)
		}
	}
	return &login{cfg: cfg, issuer: oidcCfg.Issuer, client: v.HTTPClient(), verifier: v}, nil
}

func (l *login) discover(ctx context.Context) (*oidc.Provider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider != nil {
		return l.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.client), l.issuer)
	if err != nil {
		return nil, fmt.Errorf("the identity provider %s cannot be reached (%v); try again later", l.issuer, err)
	}
	l.provider = p
	return p, nil
}

// oauth2 returns the client configuration for a request: the redirect URL is
// configured, or derived from the request on loopback.
func (l *login) oauth2(p *oidc.Provider, r *http.Request) (*oauth2.Config, error) {
	redirect := l.cfg.RedirectURL
	if redirect == "" {
		host, _, _ := net.SplitHostPort(r.Host)
		if !loopback(host) || r.TLS != nil {
			return nil, fmt.Errorf("console.redirect_url is not set; set it to this console's https origin + /auth/callback")
		}
		redirect = "http://" + r.Host + "/auth/callback"
	}
	scopes := append([]string{oidc.ScopeOpenID}, l.cfg.Scopes...)
	if len(l.cfg.Scopes) == 0 {
		scopes = append(scopes, "profile", "email")
	}
	return &oauth2.Config{ClientID: l.cfg.ClientID, ClientSecret: l.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirect, Scopes: scopes}, nil
}

// secure reports whether cookies get the Secure attribute: always, except for a
// plain-HTTP console on loopback (development), where the browser would drop them.
func secure(oc *oauth2.Config) bool {
	u, err := url.Parse(oc.RedirectURL)
	return err != nil || u.Scheme != "http" || !loopback(u.Hostname())
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pending is the login in progress, kept in a short-lived HttpOnly cookie.
type pending struct {
	State    string `json:"s"`
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
	Next     string `json:"x"`
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if c.login == nil {
		c.fail(w, http.StatusNotFound, errNoLogin)
		return
	}
	p, err := c.login.discover(r.Context())
	if err != nil {
		c.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	oc, err := c.login.oauth2(p, r)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err)
		return
	}
	st := pending{State: random(), Verifier: oauth2.GenerateVerifier(), Nonce: random(), Next: localPath(r.URL.Query().Get("next"))}
	b, _ := json.Marshal(st)
	// Lax, not Strict: the issuer's redirect back is a cross-site navigation.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/auth/",
		MaxAge: int(loginTTL / time.Second), HttpOnly: true, Secure: secure(oc), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, oc.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)), http.StatusFound)
}

func (c *Console) handleCallback(w http.ResponseWriter, r *http.Request) {
	if c.login == nil {
		c.fail(w, http.StatusNotFound, errNoLogin)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		c.fail(w, http.StatusUnauthorized, fmt.Errorf("the identity provider refused the login: %s %s", e, q.Get("error_description")))
		return
	}
	st, ok := readPending(r)
	if !ok || q.Get("state") == "" || q.Get("state") != st.State {
		c.fail(w, http.StatusBadRequest, fmt.Errorf("this login expired or was started elsewhere; start again"))
		return
	}
	p, err := c.login.discover(r.Context())
	if err != nil {
		c.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	oc, err := c.login.oauth2(p, r)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err)
		return
	}
	raw, id, err := c.login.exchange(r.Context(), p, oc, q.Get("code"), st)
	if err != nil {
		c.fail(w, http.StatusUnauthorized, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/auth/", MaxAge: -1, HttpOnly: true, Secure: secure(oc), SameSite: http.SameSiteLaxMode})
	// The session ends when the token does.
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: raw, Path: "/", Expires: id.Expiry,
		HttpOnly: true, Secure: secure(oc), SameSite: http.SameSiteStrictMode})
	c.log.Info("console_login", "subject", id.Subject, "issuer", id.Issuer, "expires", id.Expiry)
	// A page, not a redirect: a SameSite=Strict cookie is not sent on the rest of a
	// navigation that started at the issuer; this page's refresh starts a new one.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	continuePage.Execute(w, st.Next)
}

// exchange redeems the code with the PKCE verifier, checks the ID token's nonce, and
// verifies it as the API will on every request.
func (l *login) exchange(ctx context.Context, p *oidc.Provider, oc *oauth2.Config, code string, st pending) (string, auth.Identity, error) {
	ctx = oidc.ClientContext(ctx, l.client)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return "", auth.Identity{}, fmt.Errorf("the identity provider did not redeem the login code (%v); start again", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", auth.Identity{}, fmt.Errorf("the identity provider returned no ID token; request the openid scope for client %s", oc.ClientID)
	}
	if len(raw) > maxCookieToken {
		return "", auth.Identity{}, fmt.Errorf("the ID token is %d bytes, too large for a cookie; ask the identity provider for fewer claims (groups)", len(raw))
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: oc.ClientID, SupportedSigningAlgs: supportedAlgs}).Verify(ctx, raw)
	if err != nil {
		return "", auth.Identity{}, fmt.Errorf("the ID token does not verify: %v", err)
	}
	if idt.Nonce != st.Nonce {
		return "", auth.Identity{}, fmt.Errorf("the ID token was not issued for this login (nonce); start again")
	}
	id, err := l.verifier.Verify(ctx, raw)
	return raw, id, err
}

var supportedAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512, oidc.EdDSA}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(apiHeader) == "" {
		http.Error(w, "logout needs the "+apiHeader+" header", http.StatusForbidden)
		return
	}
	sec := true
	if host, _, _ := net.SplitHostPort(r.Host); loopback(host) && r.TLS == nil {
		sec = false
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Path: "/", MaxAge: -1, HttpOnly: true, Secure: sec, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func readPending(r *http.Request) (pending, bool) {
	var st pending
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		return st, false
	}
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, st.State != "" && st.Verifier != ""
}

// localPath keeps a post-login destination on this site: an absolute path, not
// "//host" or "/\host", which browsers treat as another origin.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}

func random() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Console) fail(w http.ResponseWriter, code int, err error) {
	c.log.Warn("console login failed", "err", err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	failPage.Execute(w, err.Error())
}

var (
	continuePage = template.Must(template.New("continue").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tapline: signed in</title>
<meta http-equiv="refresh" content="0;url={{.}}"><link rel="stylesheet" href="/assets/app.css"></head>
<body><main class="narrow"><p>Signed in. <a href="{{.}}">Continue</a>.</p></main></body></html>
`))
	failPage = template.Must(template.New("fail").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tapline: login failed</title>
<link rel="stylesheet" href="/assets/app.css"></head>
<body><main class="narrow"><h1>Login failed</h1><p class="error" id="login-error">{{.}}</p>
<p><a href="/auth/login">Try again</a></p></main></body></html>
`))
)
