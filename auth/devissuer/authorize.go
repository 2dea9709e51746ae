package devissuer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The browser login of `tapline dev`: an authorize page where whoever sits at the
// machine picks a subject and groups (there is no password: this is not an IdP),
// then the standard code exchange with PKCE. It is the minimum of RFC 6749 and
// RFC 7636 the console's OIDC client needs, and it answers loopback clients only.

// ConsoleClient is the client id of the console in `tapline dev`.
const ConsoleClient = "tapline-console"

const (
	codeTTL = time.Minute
	// LoginTTL is how long a console login minted here lasts.
	LoginTTL = 8 * time.Hour
)

type grant struct {
	clientID, redirectURI, challenge, nonce, subject string
	groups                                           []string
	expires                                          time.Time
}

type codes struct {
	mu sync.Mutex
	m  map[string]grant
}

func (c *codes) put(g grant) string {
	b := make([]byte, 24)
	rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, v := range c.m { // a dev issuer sees few logins; sweep on write
		if now.After(v.expires) {
			delete(c.m, k)
		}
	}
	c.m[code] = g
	return code
}

// take redeems a code once.
func (c *codes) take(code string) (grant, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.m[code]
	delete(c.m, code)
	return g, ok && time.Now().Before(g.expires)
}

// authRequest is what the client sent to /authorize, carried through the form.
type authRequest struct {
	ClientID, RedirectURI, State, Nonce, Challenge, Scope string
}

func parseAuthRequest(v url.Values) (authRequest, string) {
	a := authRequest{ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), State: v.Get("state"),
		Nonce: v.Get("nonce"), Challenge: v.Get("code_challenge"), Scope: v.Get("scope")}
	switch {
	case v.Get("response_type") != "code":
		return a, "response_type must be code"
	case a.ClientID == "":
		return a, "client_id is required"
	case !loopbackRedirect(a.RedirectURI):
		return a, "redirect_uri must be an http(s) URL on loopback: the dev issuer only logs in to a local console"
	case a.Challenge == "" || v.Get("code_challenge_method") != "S256":
		return a, "PKCE is required: send code_challenge with code_challenge_method=S256"
	}
	return a, ""
}

func loopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && isLoopback(u.Hostname()) && u.Fragment == ""
}

func remoteLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	return err == nil && isLoopback(host)
}

func (i *Issuer) authorizePage(w http.ResponseWriter, r *http.Request) {
	if !remoteLoopback(r) {
		http.Error(w, "the dev issuer's login answers loopback clients only", http.StatusForbidden)
		return
	}
	a, problem := parseAuthRequest(r.URL.Query())
	if problem != "" {
		http.Error(w, "dev issuer: "+problem, http.StatusBadRequest)
		return
	}
	pageHeaders(w, a.RedirectURI)
	authorizeTmpl.Execute(w, a)
}

func (i *Issuer) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if !remoteLoopback(r) {
		http.Error(w, "the dev issuer's login answers loopback clients only", http.StatusForbidden)
		return
	}
	// A form posted from another origin would log the browser in as someone the
	// other site chose.
	if o := r.Header.Get("Origin"); o != "" && o != i.URL() {
		http.Error(w, "dev issuer: the login form must be posted from the dev issuer's own page", http.StatusForbidden)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "dev issuer: "+err.Error(), http.StatusBadRequest)
		return
	}
	a, problem := parseAuthRequest(r.PostForm)
	sub := strings.TrimSpace(r.PostForm.Get("subject"))
	if problem == "" && sub == "" {
		problem = "pick a subject"
	}
	if problem != "" {
		http.Error(w, "dev issuer: "+problem, http.StatusBadRequest)
		return
	}
	var groups []string
	for _, g := range strings.Split(r.PostForm.Get("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	code := i.codes.put(grant{clientID: a.ClientID, redirectURI: a.RedirectURI, challenge: a.Challenge, nonce: a.Nonce,
		subject: sub, groups: groups, expires: time.Now().Add(codeTTL)})
	u, _ := url.Parse(a.RedirectURI)
	q := u.Query()
	q.Set("code", code)
	if a.State != "" {
		q.Set("state", a.State)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token redeems a code: the PKCE verifier must match the challenge, the client and
// redirect URI the authorize request's. The ID token's audience is the client id.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request", err.Error())
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		tokenError(w, "unsupported_grant_type", "only authorization_code is supported")
		return
	}
	clientID := f.Get("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		clientID, _ = url.QueryUnescape(id)
	}
	g, ok := i.codes.take(f.Get("code"))
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	if !ok || g.clientID != clientID || g.redirectURI != f.Get("redirect_uri") ||
		subtle.ConstantTimeCompare([]byte(challenge), []byte(g.challenge)) != 1 {
		tokenError(w, "invalid_grant", "the code is unknown, expired, used, or not for this client, redirect_uri and code_verifier")
		return
	}
	idToken, err := i.Mint(g.subject, g.groups, LoginTTL, WithAudience(g.clientID), withNonce(g.nonce))
	if err != nil {
		tokenError(w, "server_error", err.Error())
		return
	}
	writeJSON(w, map[string]any{"access_token": idToken, "id_token": idToken, "token_type": "Bearer",
		"expires_in": int(LoginTTL / time.Second)})
}

func tokenError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	writeJSON(w, map[string]string{"error": code, "error_description": desc})
}

// pageHeaders: the form posts here and is redirected to the client, and form-action
// covers that redirect too, so it names the client's origin.
func pageHeaders(w http.ResponseWriter, redirect string) {
	u, _ := url.Parse(redirect) // validated by parseAuthRequest
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+u.Scheme+"://"+u.Host+"; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
}

var authorizeTmpl = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tapline dev login</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto}label{display:block;margin:.8rem 0}input{display:block;width:100%;padding:.3rem}</style>
</head><body>
<h1>tapline dev login</h1>
<p>Development only: pick who you are. There is no password; anyone on this machine can be anyone.</p>
<form method="post" action="/authorize">
<label>Subject <input name="subject" id="subject" value="alice" required autofocus></label>
<label>Groups (comma-separated; <code>auditors</code> see every session) <input name="groups" id="groups" value="dev"></label>
<input type="hidden" name="response_type" value="code">
<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.RedirectURI}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<input type="hidden" name="scope" value="{{.Scope}}">
<input type="hidden" name="code_challenge" value="{{.Challenge}}">
<input type="hidden" name="code_challenge_method" value="S256">
<button type="submit" id="submit">Log in to {{.ClientID}}</button>
</form></body></html>
`))
