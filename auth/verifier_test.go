package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func newVerifier(t *testing.T, ti *testIssuer, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{Issuer: ti.url(), Audience: "tapline"}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func TestVerifyAcceptsEachSupportedAlgorithm(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, nil)
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			claims := ti.claims("alice")
			id, err := v.Verify(context.Background(), ti.sign(t, alg, claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Identity{
				Issuer: ti.url(), Subject: "alice", Email: "alice@example.com", Name: "Alice Example",
				Groups: []string{"dba", "ops"}, TokenID: "tok-1",
				Expiry: time.Unix(claims["exp"].(int64), 0),
			}
			if !identityEqual(id, want) {
				t.Fatalf("identity\n got %+v\nwant %+v", id, want)
			}
		})
	}
}

func identityEqual(a, b Identity) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.Email == b.Email && a.Name == b.Name &&
		slices.Equal(a.Groups, b.Groups) && a.TokenID == b.TokenID && a.Expiry.Equal(b.Expiry)
}

func TestVerifyReadsGroupsFromConfiguredClaim(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, func(c *Config) { c.GroupsClaim = "roles" })
	cases := []struct {
		name  string
		roles any // nil: claim absent
		want  []string
	}{
		{"array", []string{"dba", "auditors"}, []string{"dba", "auditors"}},
		{"single string", "dba", []string{"dba"}},
		{"absent", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := ti.claims("alice") // also carries "groups", which must be ignored
			if tc.roles != nil {
				claims["roles"] = tc.roles
			}
			id, err := v.Verify(context.Background(), ti.sign(t, jose.ES256, claims))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Groups, tc.want) {
				t.Fatalf("groups = %q, want %q", id.Groups, tc.want)
			}
		})
	}
	t.Run("wrong type", func(t *testing.T) {
		claims := ti.claims("alice")
		claims["roles"] = map[string]any{"dba": true}
		_, err := v.Verify(context.Background(), ti.sign(t, jose.ES256, claims))
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), `claim "roles"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestVerifyFallsBackToPreferredUsername(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, nil)
	claims := ti.claims("svc-1")
	delete(claims, "name")
	claims["preferred_username"] = "ci-runner"
	id, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, claims))
	if err != nil || id.Name != "ci-runner" {
		t.Fatalf("name = %q, err = %v", id.Name, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, nil)
	now := time.Now()
	strangerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	with := func(mod func(map[string]any)) string {
		c := ti.claims("alice")
		mod(c)
		return ti.sign(t, jose.ES256, c)
	}
	valid := ti.sign(t, jose.RS256, ti.claims("alice"))
	parts := strings.Split(valid, ".")

	cases := []struct {
		name    string
		token   string
		kind    error
		message string
	}{
		{"expired", with(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Hour).Unix() }), ErrExpired, "token expired at "},
		{"no exp", with(func(c map[string]any) { delete(c, "exp") }), ErrInvalidToken, "no expiry"},
		{"not yet valid", with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), ErrInvalidToken, "not valid before"},
		{"nbf beyond int64", with(func(c map[string]any) { c["nbf"] = 1e19 }), ErrInvalidToken, "out of range"},
		{"nbf far in the future", with(func(c map[string]any) { c["nbf"] = 9.3e18 }), ErrInvalidToken, "out of range"},
		{"wrong audience", with(func(c map[string]any) { c["aud"] = "other-app" }), ErrInvalidToken, "audience mismatch"},
		{"wrong issuer", with(func(c map[string]any) { c["iss"] = "https://evil.example" }), ErrInvalidToken, "issuer mismatch"},
		{"no subject", with(func(c map[string]any) { delete(c, "sub") }), ErrInvalidToken, "no subject"},
		{"bad signature", parts[0] + "." + parts[1] + "." + flipFirst(parts[2]), ErrInvalidToken, "bad signature"},
		{"payload swapped under valid signature", parts[0] + "." + encodeClaims(t, map[string]any{"sub": "root"}) + "." + parts[2], ErrInvalidToken, "bad signature"},
		{"unknown key", signWith(t, jose.ES256, jose.JSONWebKey{Key: strangerKey, KeyID: "stranger"}, ti.claims("alice")), ErrInvalidToken, "unknown signing key"},
		{"alg none", unsigned(t, ti.claims("alice")), ErrInvalidToken, `"none" not accepted`},
		{"HS256 with the public key as secret", signWith(t, jose.HS256, ti.rsaPublicPEM(t), ti.claims("alice")), ErrInvalidToken, `"HS256" not accepted`},
		{"empty", "", ErrInvalidToken, "empty token"},
		{"garbage", "hunter2", ErrInvalidToken, "not a JWT"},
		{"three garbage segments", "a.b.c", ErrInvalidToken, "malformed token"},
		{"JWE", "a.b.c.d.e", ErrInvalidToken, "JWE"},
		{"huge", strings.Repeat("a", 70<<10) + ".b.c", ErrInvalidToken, "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.message)
			}
			if id.Subject != "" {
				t.Fatalf("rejected token still produced identity %+v", id)
			}
		})
	}
}

func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func encodeClaims(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// unsigned builds an "alg": "none" token, as an attacker would.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return hdr + "." + encodeClaims(t, claims) + "."
}

func TestVerifyToleratesClockSkew(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, func(c *Config) { c.ClockSkew = time.Minute })
	claims := ti.claims("alice")
	claims["exp"] = time.Now().Add(-20 * time.Second).Unix()
	claims["nbf"] = time.Now().Add(20 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), ti.sign(t, jose.EdDSA, claims)); err != nil {
		t.Fatalf("token within skew rejected: %v", err)
	}
}

func TestVerifyHonoursConfiguredAlgorithms(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, func(c *Config) { c.Algorithms = []string{"ES256"} })
	if _, err := v.Verify(context.Background(), ti.sign(t, jose.ES256, ti.claims("a"))); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	_, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, ti.claims("a")))
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), `"RS256" not accepted`) {
		t.Fatalf("RS256 with only ES256 allowed: %v", err)
	}
}

func TestUnknownKeyRefetchesKeysForRotation(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, func(c *Config) { c.KeyRefetchInterval = 50 * time.Millisecond })
	if _, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, ti.claims("a"))); err != nil {
		t.Fatal(err)
	}
	// The IdP rotates in a new key after the verifier cached the old set.
	newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti.rotate(jose.ES256, jose.JSONWebKey{Key: newKey, KeyID: "ec-2", Algorithm: "ES256", Use: "sig"})
	tok := ti.sign(t, jose.ES256, ti.claims("a"))
	// Within the refetch interval of the first fetch the new key may not be
	// fetched yet; once the interval has passed it must be.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token signed by rotated-in key: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadTokensDoNotFloodTheIssuerWithKeyFetches(t *testing.T) {
	ti := newTestIssuer(t)
	// An interval longer than the test: any fetch after the first is a flood.
	v := newVerifier(t, ti, func(c *Config) { c.KeyRefetchInterval = time.Hour })
	if _, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, ti.claims("a"))); err != nil {
		t.Fatal(err)
	}
	before := ti.jwksHits.Load()
	valid := strings.Split(ti.sign(t, jose.RS256, ti.claims("a")), ".")
	for i := range 20 {
		stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		unknown := signWith(t, jose.ES256, jose.JSONWebKey{Key: stranger, KeyID: fmt.Sprintf("stranger-%d", i)}, ti.claims("a"))
		badSig := valid[0] + "." + valid[1] + "." + flipFirst(valid[2])
		for _, tok := range []string{unknown, badSig} {
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("bad token %d: err = %v, want ErrInvalidToken", i, err)
			}
		}
	}
	if n := ti.jwksHits.Load() - before; n > 1 {
		t.Fatalf("40 bad tokens caused %d key fetches, want at most 1", n)
	}
	// Good tokens still verify from the cache.
	if _, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, ti.claims("a"))); err != nil {
		t.Fatal(err)
	}
}

func TestKeysUnavailableIsNotBlamedOnTheToken(t *testing.T) {
	ti := newTestIssuer(t)
	v := newVerifier(t, ti, nil)
	ti.keysDown.Store(true)
	_, err := v.Verify(context.Background(), ti.sign(t, jose.RS256, ti.claims("a")))
	if !errors.Is(err, ErrIssuerUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrIssuerUnavailable", err)
	}
}

func TestLazyDiscoveryLetsGatewayStartBeforeIssuer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the IdP is "down"

	v, err := NewVerifier(context.Background(), Config{Issuer: "http://" + addr, Audience: "tapline"})
	if err != nil {
		t.Fatalf("NewVerifier with issuer down: %v", err)
	}
	v.retryGap = time.Hour
	if err := v.Ready(context.Background()); !errors.Is(err, ErrIssuerUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Ready with issuer down: %v", err)
	}

	ti := newTestIssuerWith(t, func(h http.Handler) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		s.Listener.Close()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		s.Listener = l
		s.Start()
		return s
	}, "")
	tok := ti.sign(t, jose.RS256, ti.claims("alice"))

	// Within the retry gap the last failure is returned without contacting the IdP.
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("within retry gap: %v", err)
	}
	v.mu.Lock()
	v.retryGap = 0
	v.mu.Unlock()
	if id, err := v.Verify(context.Background(), tok); err != nil || id.Subject != "alice" {
		t.Fatalf("after issuer came up: id=%+v err=%v", id, err)
	}
}

func TestNewVerifierFailsOnIssuerMismatch(t *testing.T) {
	ti := newTestIssuerWith(t, httptest.NewServer, "https://login.example.com")
	_, err := NewVerifier(context.Background(), Config{Issuer: ti.url(), Audience: "tapline"})
	if err == nil || !strings.Contains(err.Error(), "https://login.example.com") {
		t.Fatalf("err = %v, want issuer mismatch naming the announced issuer", err)
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no issuer", Config{Audience: "tapline"}, "issuer is required"},
		{"not a url", Config{Issuer: "login.example.com", Audience: "tapline"}, "not an http(s) URL"},
		{"plain http off loopback", Config{Issuer: "http://login.example.com", Audience: "tapline"}, "must use https"},
		{"no audience", Config{Issuer: "https://login.example.com"}, "audience is required"},
		{"symmetric alg", Config{Issuer: "https://login.example.com", Audience: "tapline", Algorithms: []string{"HS256"}}, `"HS256" not supported`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestIssuerOverTLSWithPrivateCA(t *testing.T) {
	ti := newTestIssuerWith(t, httptest.NewTLSServer, "")
	tok := ti.sign(t, jose.EdDSA, ti.claims("alice"))

	// Without the CA the issuer's certificate is not trusted.
	untrusting, err := NewVerifier(context.Background(), Config{Issuer: ti.url(), Audience: "tapline"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Verify(context.Background(), tok); !errors.Is(err, ErrIssuerUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted CA: %v", err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, ti, func(c *Config) { c.CAFile = caFile })
	if id, err := v.Verify(context.Background(), tok); err != nil || id.Subject != "alice" {
		t.Fatalf("with CA file: id=%+v err=%v", id, err)
	}
}
