package devissuer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tapline/tapline/auth"
)

// loginCode runs the authorize form for sub and returns the code sent to redirect.
func loginCode(t *testing.T, iss *Issuer, challenge, redirect string) string {
	t.Helper()
	form := url.Values{"response_type": {"code"}, "client_id": {ConsoleClient}, "redirect_uri": {redirect},
		"state": {"st"}, "nonce": {"n1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
		"subject": {"alice"}, "groups": {"dev,auditors"}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(iss.URL()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("state") != "st" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

func redeem(t *testing.T, iss *Issuer, code, verifier, redirect string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(iss.URL()+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {ConsoleClient}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("token: %v in %s", err, b)
	}
	return resp.StatusCode, out
}

func TestBrowserLoginNeedsTheCodeVerifierAndRedeemsOnce(t *testing.T) {
	iss, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, iss, "")
	const redirect = "http://127.0.0.1:1/auth/callback"
	verifierText := "a-verifier-of-enough-length-0123456789abcdef"
	sum := sha256.Sum256([]byte(verifierText))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	code := loginCode(t, iss, challenge, redirect)
	if status, out := redeem(t, iss, code, "another-verifier-0123456789abcdef0123456789", redirect); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Errorf("wrong verifier: %d %v", status, out)
	}
	// A failed attempt burns the code: it cannot be guessed at.
	if status, _ := redeem(t, iss, code, verifierText, redirect); status != http.StatusBadRequest {
		t.Errorf("code reused after a failure: %d", status)
	}

	code = loginCode(t, iss, challenge, redirect)
	status, out := redeem(t, iss, code, verifierText, redirect)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, out)
	}
	idTok, _ := out["id_token"].(string)
	v := verifierFor(t, iss, ConsoleClient)
	id, err := v.Verify(t.Context(), idTok)
	if err != nil || id.Subject != "alice" || !id.InGroup("auditors") {
		t.Fatalf("ID token: %+v %v", id, err)
	}
	if status, _ := redeem(t, iss, code, verifierText, redirect); status != http.StatusBadRequest {
		t.Errorf("code redeemed twice: %d", status)
	}
}

func TestAuthorizePageRefusesRemoteRedirectsAndMissingPKCE(t *testing.T) {
	iss, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, iss, "")
	for name, q := range map[string]string{
		"remote redirect": "response_type=code&client_id=c&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&code_challenge=x&code_challenge_method=S256",
		"no PKCE":         "response_type=code&client_id=c&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb",
		"plain PKCE":      "response_type=code&client_id=c&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb&code_challenge=x&code_challenge_method=plain",
	} {
		resp, err := http.Get(iss.URL() + "/authorize?" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "<form") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	// A form posted from another origin does not log anyone in.
	req, _ := http.NewRequest(http.MethodPost, iss.URL()+"/authorize", strings.NewReader("subject=mallory"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin form: %d", resp.StatusCode)
	}
}

func verifierFor(t *testing.T, iss *Issuer, aud string) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), auth.Config{Issuer: iss.URL(), Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
