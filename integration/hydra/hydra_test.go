package hydra

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/console"
	"github.com/tapline/tapline/query/memstore"
)

// wait bounds every wait on Hydra: generous, for a loaded CI machine.
const wait = 60 * time.Second

// provider is one Hydra with an in-memory store, and the login and consent app the
// test provides: it logs in whoever the test named, with the groups it named.
type provider struct {
	t             *testing.T
	issuer, admin string
	subject       string
	groups        []string
	loginApp      *httptest.Server
	exited        chan struct{}
}

func startHydra(t *testing.T) *provider {
	t.Helper()
	bin := testenv.Hydra(t)
	p := &provider{t: t}
	p.loginApp = httptest.NewServer(http.HandlerFunc(p.loginOrConsent))
	t.Cleanup(p.loginApp.Close)
	public, admin := testenv.FreePort(t), testenv.FreePort(t)
	p.issuer = fmt.Sprintf("http://127.0.0.1:%d", public)
	p.admin = fmt.Sprintf("http://127.0.0.1:%d", admin)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "nice", bin, "serve", "all", "--dev")
	cmd.Env = append(os.Environ(), "DSN=memory", "URLS_SELF_ISSUER="+p.issuer, "URLS_LOGIN="+p.loginApp.URL+"/login",
		"URLS_CONSENT="+p.loginApp.URL+"/consent", "SECRETS_SYSTEM=tapline-test-secret-of-32-characters!",
		"STRATEGIES_ACCESS_TOKEN=jwt", "SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", public),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", admin), "LOG_LEVEL=warn", "SQA_OPT_OUT=true")
	logPath := filepath.Join(t.TempDir(), "hydra.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hydra: %v", err)
	}
	p.exited = make(chan struct{})
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cancel()
		<-p.exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("hydra log:\n%s", b)
		}
	})
	// Hydra makes a missing signing key on first use (discovery, a token), a
	// 4096-bit RSA key, which on a loaded machine outlasts its 10 s write timeout:
	// it gets its keys before anything asks for them.
	p.waitReady(p.admin + "/health/ready")
	p.putKey("hydra.openid.id-token", "id-1")
	p.putKey("hydra.jwt.access-token", "access-1")
	p.waitReady(p.issuer + "/.well-known/openid-configuration")
	return p
}

// putKey adds a 2048-bit RSA signing key to a key set; the newest key signs.
func (p *provider) putKey(set, kid string) {
	p.t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		p.t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "RS256", Use: "sig"}
	b, err := jwk.MarshalJSON()
	if err != nil {
		p.t.Fatal(err)
	}
	p.call(http.MethodPut, "/admin/keys/"+set+"/"+kid, json.RawMessage(b), nil)
}

func (p *provider) waitReady(u string) {
	p.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("hydra not ready at %s: %v", u, err)
		}
		select {
		case <-p.exited:
			p.t.Fatalf("hydra exited before it was ready (its log follows)")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// call sends JSON to Hydra's admin API and decodes the answer into out.
func (p *provider) call(method, path string, in, out any) {
	p.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.admin+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		p.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// loginOrConsent is the login and consent app: it accepts at once, as the
// subject and groups the test chose, and puts the groups in the ID token.
func (p *provider) loginOrConsent(w http.ResponseWriter, r *http.Request) {
	var redirect struct {
		To string `json:"redirect_to"`
	}
	switch r.URL.Path {
	case "/login":
		ch := r.URL.Query().Get("login_challenge")
		p.call(http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(ch),
			map[string]any{"subject": p.subject}, &redirect)
	case "/consent":
		ch := r.URL.Query().Get("consent_challenge")
		var req struct {
			Scope    []string `json:"requested_scope"`
			Audience []string `json:"requested_access_token_audience"`
		}
		p.call(http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(ch), nil, &req)
		p.call(http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(ch),
			map[string]any{"grant_scope": req.Scope, "grant_access_token_audience": req.Audience,
				"session": map[string]any{"id_token": map[string]any{"groups": p.groups, "email": p.subject + "@hydra.example"}}}, &redirect)
	default:
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, redirect.To, http.StatusFound)
}

type client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

func (p *provider) createClient(spec map[string]any) client {
	p.t.Helper()
	var c client
	p.call(http.MethodPost, "/admin/clients", spec, &c)
	return c
}

// agentToken is a client-credentials JWT access token for audience, as an agent gets one.
func (p *provider) agentToken(c client, audience string) (string, error) {
	return p.agentTokenScope(c, audience, "")
}

func (p *provider) agentTokenScope(c client, audience, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, p.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token: %d %v %s", resp.StatusCode, err, out.Error)
	}
	return out.AccessToken, nil
}

func TestAgentTokensFromHydra(t *testing.T) {
	t.Parallel()
	p := startHydra(t)
	agent := p.createClient(map[string]any{"client_name": "ci-agent", "grant_types": []string{"client_credentials"},
		"audience": []string{"tapline-gateway", "tapline-query"}, "access_token_strategy": "jwt",
		"token_endpoint_auth_method": "client_secret_basic"})
	ctx := context.Background()
	// A token with an unknown key id makes the verifier refetch the keys, at most
	// once per KeyRefetchInterval (10 s by default; short here so rotation is quick).
	gateway, err := auth.NewVerifier(ctx, auth.Config{Issuer: p.issuer, Audience: "tapline-gateway", KeyRefetchInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	tok, err := p.agentToken(agent, "tapline-gateway")
	if err != nil {
		t.Fatal(err)
	}
	id, err := gateway.Verify(ctx, tok)
	if err != nil || id.Subject != agent.ID || id.Issuer != p.issuer {
		t.Fatalf("a gateway token from Hydra: %+v %v", id, err)
	}

	t.Run("wrong audience refused", func(t *testing.T) {
		other, err := p.agentToken(agent, "tapline-query")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateway.Verify(ctx, other); err == nil || !strings.Contains(err.Error(), "audience") {
			t.Errorf("a tapline-query token at the gateway: %v, want an audience refusal", err)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		// A new signing key: tokens signed with it verify once the verifier refetches
		// the provider's keys, which a token with an unknown key id triggers.
		p.putKey("hydra.jwt.access-token", "access-2")
		rotated, err := p.agentToken(agent, "tapline-gateway")
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, rotated) == kidOf(t, tok) {
			t.Fatalf("Hydra still signs with key %s after the rotation", kidOf(t, tok))
		}
		// Refetches are rate limited, so the first try may come too soon after the last.
		deadline := time.Now().Add(wait)
		for _, err := gateway.Verify(ctx, rotated); err != nil; _, err = gateway.Verify(ctx, rotated) {
			if time.Now().After(deadline) {
				t.Fatalf("a token signed with the new key: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := gateway.Verify(ctx, tok); err != nil {
			t.Errorf("a token signed with the old key, still published: %v", err)
		}
	})
}

func kidOf(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	b, err := decodeSegment(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func TestConsoleLoginWithHydra(t *testing.T) {
	t.Parallel()
	p := startHydra(t)
	p.subject, p.groups = "dana", []string{"dev", api.DefaultAuditorsGroup}

	// The console behind an httptest server on loopback: its redirect URL is derived.
	ctx := context.Background()
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	web := p.createClient(map[string]any{"client_name": "tapline-console", "grant_types": []string{"authorization_code"},
		"response_types": []string{"code"}, "scope": "openid profile email", "token_endpoint_auth_method": "none",
		"redirect_uris": []string{srv.URL + "/auth/callback"}})
	oidc := auth.Config{Issuer: p.issuer, Audience: "tapline-query"}
	c, err := console.New(ctx, console.Config{ClientID: web.ID}, oidc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(ctx, oidc)
	if err != nil {
		t.Fatal(err)
	}
	h = c.Handler(api.New(api.Config{SessionCookie: console.CookieName, SessionVerifier: c.Verifier()}, memstore.NewStore(), v))

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: wait}
	resp, err := browser.Get(srv.URL + "/auth/login?next=/sql")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/auth/callback" || !strings.Contains(string(body), `url=/sql`) {
		t.Fatalf("login through Hydra ended with %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, err = browser.Get(srv.URL + "/api/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me api.Me
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || me.Subject != "dana" || me.Issuer != p.issuer || !me.Auditor {
		t.Fatalf("me after a Hydra login: %d %+v %v", resp.StatusCode, me, err)
	}
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
