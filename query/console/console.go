// Package console is tapline's read-only web console: a page application served at
// "/" next to the query API, reading only through the API (and so through its access
// rules and access trail). Its assets are embedded; nothing is fetched from anywhere
// else, and the Content-Security-Policy allows no inline script.
//
// Login is the OIDC authorization code flow with PKCE against the configured issuer
// (login.go). The session cookie holds the ID token the issuer returned; the API
// accepts it (api.Config.SessionCookie) through Verifier, whose audience is the
// console's client id.
package console

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tapline/tapline/auth"
)

//go:embed assets
var assets embed.FS

// CookieName is the session cookie; api.Config.SessionCookie must name it.
const CookieName = "tapline_session"

// Config is the `console:` section of the query configuration (docs/console.md).
type Config struct {
	// Disabled serves the API only.
	Disabled bool `yaml:"disabled"`
	// ClientID is the console's OIDC client (a public client using PKCE, or a
	// confidential one with ClientSecret). Without it the console is served but
	// nobody can log in.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// RedirectURL is where the issuer sends the browser back: the console's
	// origin + "/auth/callback", as registered with the issuer. Empty: derived from
	// the request (loopback development only).
	RedirectURL string `yaml:"redirect_url"`
	// Scopes requested besides "openid" (default profile, email).
	Scopes []string `yaml:"scopes"`
}

// Console serves the pages and the login endpoints around an API handler.
type Console struct {
	cfg      Config
	login    *login // nil without a client id
	verifier *auth.Verifier
	static   http.Handler
	index    []byte
	log      *slog.Logger
}

// New prepares the console for the API's identity provider (oidc: the API's
// verifier configuration; the console's ID tokens are checked like the API's
// tokens, with its client id as audience).
func New(ctx context.Context, cfg Config, oidc auth.Config) (*Console, error) {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, static: http.StripPrefix("/assets/", http.FileServerFS(sub)), index: index, log: slog.Default()}
	if cfg.ClientID == "" {
		slog.Warn("console: no console.client_id configured; the console is served but nobody can log in")
		return c, nil
	}
	vc := oidc
	vc.Audience = cfg.ClientID
	if c.verifier, err = auth.NewVerifier(ctx, vc); err != nil {
		return nil, err
	}
	if c.login, err = newLogin(cfg, oidc, c.verifier); err != nil {
		return nil, err
	}
	return c, nil
}

// Verifier checks session cookies for the API (api.Config.SessionVerifier). It is
// nil when login is not configured.
func (c *Console) Verifier() *auth.Verifier { return c.verifier }

// Handler serves the console around api: /api/ and /healthz go to the API, /auth/ to
// login, /assets/ to the embedded files, and every other GET to the page
// application, which routes in the browser (an unknown page shows its 404).
func (c *Console) Handler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/healthz", api)
	mux.Handle("GET /assets/", c.static)
	mux.HandleFunc("GET /auth/login", c.handleLogin)
	mux.HandleFunc("GET /auth/callback", c.handleCallback)
	mux.HandleFunc("POST /auth/logout", c.handleLogout)
	mux.HandleFunc("/", c.page)
	return securityHeaders(mux)
}

func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console's pages are read with GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(c.index)
}

// contentSecurityPolicy: scripts only from this origin, no inline script or eval.
// 'wasm-unsafe-eval' lets the terminal player compile its WebAssembly terminal
// emulator (it cannot run script); inline styles are allowed because the player
// sizes its terminal through style attributes.
const contentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			hd.Set("Content-Security-Policy", contentSecurityPolicy)
			hd.Set("X-Frame-Options", "DENY")
		}
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

var errNoLogin = errors.New("login is not configured: set console.client_id in the query configuration (docs/console.md)")
