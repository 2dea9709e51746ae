package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIssuer is an OIDC issuer in the test process: discovery and JWKS over real
// HTTP, with one key per supported algorithm family.
type testIssuer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     map[jose.SignatureAlgorithm]jose.JSONWebKey // private, by alg
	jwksHits atomic.Int64
	keysDown atomic.Bool // JWKS answers 503
	announce string      // issuer value in discovery if not the server's own URL
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	return newTestIssuerWith(t, httptest.NewServer, "")
}

// newTestIssuerWith lets a test choose how the server starts (TLS, fixed listener)
// and what issuer it announces in discovery ("" = its own URL).
func newTestIssuerWith(t *testing.T, start func(http.Handler) *httptest.Server, announce string) *testIssuer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{keys: map[jose.SignatureAlgorithm]jose.JSONWebKey{
		jose.RS256: {Key: rsaKey, KeyID: "rsa-1", Algorithm: string(jose.RS256), Use: "sig"},
		jose.ES256: {Key: ecKey, KeyID: "ec-1", Algorithm: string(jose.ES256), Use: "sig"},
		jose.EdDSA: {Key: edKey, KeyID: "ed-1", Algorithm: string(jose.EdDSA), Use: "sig"},
	}, announce: announce}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := ti.url()
		if ti.announce != "" {
			iss = ti.announce
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              ti.url() + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA", "HS256", "none"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		if ti.keysDown.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		var set jose.JSONWebKeySet
		ti.mu.Lock()
		for _, k := range ti.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		ti.mu.Unlock()
		writeJSON(w, set)
	})
	ti.srv = start(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (ti *testIssuer) url() string { return ti.srv.URL }

// claims returns a valid claim set for sub; tests then spoil one field.
func (ti *testIssuer) claims(sub string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":    ti.url(),
		"aud":    "tapline",
		"sub":    sub,
		"email":  sub + "@example.com",
		"name":   "Alice Example",
		"groups": []string{"dba", "ops"},
		"jti":    "tok-1",
		"iat":    now.Unix(),
		"exp":    now.Add(time.Hour).Unix(),
	}
}

// sign signs claims with the issuer's key for alg.
func (ti *testIssuer) sign(t *testing.T, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	return signWith(t, alg, ti.key(alg), claims)
}

func (ti *testIssuer) key(alg jose.SignatureAlgorithm) jose.JSONWebKey {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.keys[alg]
}

// rotate replaces the key for alg, as an IdP rotating keys would.
func (ti *testIssuer) rotate(alg jose.SignatureAlgorithm, k jose.JSONWebKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys[alg] = k
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rsaPublicPEM is the issuer's public RSA key as PEM: the HMAC secret used in the
// classic RS256 -> HS256 key-confusion forgery.
func (ti *testIssuer) rsaPublicPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(ti.key(jose.RS256).Key.(*rsa.PrivateKey).Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
