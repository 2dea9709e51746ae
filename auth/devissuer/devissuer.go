// Package devissuer is the OIDC issuer built into `tapline dev` and used by
// `tapline token`: an Ed25519 signing key and an issuer URL persisted in a data
// directory, discovery and JWKS served over loopback HTTP, token minting, and a
// browser login for the console where you pick a subject and groups.
//
// Tokens it mints are verified by auth.Verifier exactly like a real IdP's, so dev
// exercises the production code path. It is not an IdP: there is no password, anyone
// who can reach its loopback port or read the data directory can be any identity.
package devissuer

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
)

const (
	// GatewayAudience and QueryAudience are the default audiences of the two
	// roles that accept tokens. They differ so that a token presented to one
	// (and perhaps captured there) does not open the other.
	GatewayAudience = "tapline-gateway"
	QueryAudience   = "tapline-query"
	// DefaultAudience is the aud of minted tokens: the gateway's.
	DefaultAudience = GatewayAudience
	// EmailDomain completes the default email, sub@EmailDomain.
	EmailDomain = "dev.tapline.local"
	// EnvDataDir overrides the default data directory.
	EnvDataDir = "TAPLINE_DATA_DIR"

	keyFile = "signing-key.pem"
	urlFile = "url"
)

// DefaultDataDir is $TAPLINE_DATA_DIR, else ./.dev; shared by `tapline dev` and
// `tapline token` so a token minted by one verifies in the other.
func DefaultDataDir() string {
	if d := os.Getenv(EnvDataDir); d != "" {
		return d
	}
	return ".dev"
}

// Issuer signs tokens with a persisted key under a persisted URL.
type Issuer struct {
	dir    string // dataDir/issuer
	key    ed25519.PrivateKey
	kid    string
	signer jose.Signer

	codes codes // login codes in flight (authorize.go)

	mu  sync.Mutex
	url string
}

// Open loads the signing key and issuer URL from dataDir/issuer, creating them on
// first use. The URL gets a free loopback port then, so `tapline token` works
// before `tapline dev` ever ran, and tokens survive restarts.
func Open(dataDir string) (*Issuer, error) {
	dir := filepath.Join(dataDir, "issuer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	issuerURL, err := loadOrCreateURL(filepath.Join(dir, urlFile))
	if err != nil {
		return nil, err
	}
	kid, err := keyID(key)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("dev issuer: signer: %w", err)
	}
	return &Issuer{dir: dir, key: key, kid: kid, signer: signer, url: issuerURL, codes: codes{m: map[string]grant{}}}, nil
}

// URL is the issuer URL: the "iss" of minted tokens and the base of discovery.
func (i *Issuer) URL() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.url
}

func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dev issuer: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("dev issuer: encode key: %w", err)
		}
		if err := createOnce(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, err
		}
	}
	// Read back even after creating: a concurrent Open may have won the race.
	return readKey(path)
}

func readKey(path string) (ed25519.PrivateKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("dev issuer: key file %s has mode %#o; it must be readable by its owner only (chmod 600)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("dev issuer: key file %s is not PEM", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: key file %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dev issuer: key file %s holds a %T, want an Ed25519 key", path, parsed)
	}
	return key, nil
}

func loadOrCreateURL(path string) (string, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return "", err
		}
		if err := createOnce(path, []byte("http://"+addr+"\n")); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("dev issuer: %w", err)
	}
	raw := strings.TrimSpace(string(b))
	if _, err := loopbackHostPort(raw); err != nil {
		return "", fmt.Errorf("dev issuer: %s: %w", path, err)
	}
	return raw, nil
}

// loopbackHostPort checks that issuerURL is http://<loopback>:<port> and returns host:port.
func loopbackHostPort(issuerURL string) (string, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || u.Scheme != "http" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("issuer URL %q is not http://HOST:PORT", issuerURL)
	}
	if !isLoopback(u.Hostname()) {
		return "", fmt.Errorf("issuer URL %q is not on loopback", issuerURL)
	}
	return u.Host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("dev issuer: pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// createOnce writes data to path with mode 0600 unless path already exists. The
// link from a complete temp file makes it atomic: two processes opening a fresh
// data dir at once (`tapline dev` and `tapline token`) end up with the same file.
func createOnce(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("dev issuer: %w", err)
	}
	return nil
}

// replace writes data to path atomically, overwriting it.
func replace(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dev issuer: %w", err)
	}
	return nil
}

func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("dev issuer: %w", err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("dev issuer: write %s: %w", path, err)
	}
	return f.Name(), nil
}

// keyID is the RFC 7638 thumbprint: stable for a key, so kid survives restarts.
func keyID(key ed25519.PrivateKey) (string, error) {
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dev issuer: key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Handler serves discovery at /.well-known/openid-configuration, the key set at
// /keys, and the browser login (/authorize, /token; authorize.go).
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		base := i.URL()
		writeJSON(w, map[string]any{
			"issuer":                                base,
			"jwks_uri":                              base + "/keys",
			"id_token_signing_alg_values_supported": []string{string(jose.EdDSA)},
			"authorization_endpoint":                base + "/authorize",
			"token_endpoint":                        base + "/token",
			"response_types_supported":              []string{"code", "id_token"},
			"grant_types_supported":                 []string{"authorization_code"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic", "client_secret_post"},
			"scopes_supported":                      []string{"openid", "profile", "email", "groups"},
			"subject_types_supported":               []string{"public"},
			"claims_supported":                      []string{"iss", "aud", "sub", "email", "name", "groups", "jti", "iat", "exp"},
		})
	})
	mux.HandleFunc("GET /authorize", i.authorizePage)
	mux.HandleFunc("POST /authorize", i.authorizeSubmit)
	mux.HandleFunc("POST /token", i.token)
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: i.key.Public(), KeyID: i.kid, Algorithm: string(jose.EdDSA), Use: "sig",
		}}})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("dev issuer: write response", "err", err)
	}
}

// Serve serves Handler on listenAddr until ctx is done. An empty listenAddr means
// the persisted issuer address. Another address (loopback only) becomes the new
// persisted issuer URL, which invalidates tokens minted under the old one.
func (i *Issuer) Serve(ctx context.Context, listenAddr string) error {
	ln, err := i.listen(listenAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: i.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Info("dev issuer serving", "issuer", i.URL())
	select {
	case err := <-errc:
		return fmt.Errorf("dev issuer: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func (i *Issuer) listen(listenAddr string) (net.Listener, error) {
	current, _ := loopbackHostPort(i.URL()) // validated by Open
	if listenAddr == "" {
		listenAddr = current
	}
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: listen address %q: %w", listenAddr, err)
	}
	if !isLoopback(host) {
		return nil, fmt.Errorf("dev issuer: listen address %q is not loopback; the dev issuer has no login and must not be reachable from other hosts", listenAddr)
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: listen on %s (issuer URL persisted in %s): %w; if another program holds the port, stop it or delete that file to pick a new port",
			listenAddr, filepath.Join(i.dir, urlFile), err)
	}
	if addr := ln.Addr().String(); listenHost(host, addr) != current {
		if err := i.setURL("http://" + listenHost(host, addr)); err != nil {
			ln.Close()
			return nil, err
		}
		slog.Warn("dev issuer URL changed; tokens minted before no longer verify", "issuer", i.URL())
	}
	return ln, nil
}

// listenHost keeps the host the operator wrote ("localhost") with the port actually bound.
func listenHost(host, boundAddr string) string {
	_, port, _ := net.SplitHostPort(boundAddr)
	return net.JoinHostPort(host, port)
}

func (i *Issuer) setURL(u string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := replace(filepath.Join(i.dir, urlFile), []byte(u+"\n")); err != nil {
		return err
	}
	i.url = u
	return nil
}

// Option adjusts a minted token.
type Option func(*mintOptions)

type mintOptions struct {
	email, name, audience, nonce string
}

// WithEmail sets the email claim (default sub@dev.tapline.local).
func WithEmail(email string) Option { return func(o *mintOptions) { o.email = email } }

// WithName sets the name claim (default sub).
func WithName(name string) Option { return func(o *mintOptions) { o.name = name } }

// WithAudience sets aud (default DefaultAudience).
func WithAudience(aud string) Option { return func(o *mintOptions) { o.audience = aud } }

// withNonce sets the nonce claim of an ID token answering a login.
func withNonce(n string) Option { return func(o *mintOptions) { o.nonce = n } }

// Mint signs a token for sub in groups, valid for ttl from now.
func (i *Issuer) Mint(sub string, groups []string, ttl time.Duration, opts ...Option) (string, error) {
	if sub == "" {
		return "", errors.New("dev issuer: subject is required")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("dev issuer: ttl must be positive, got %s", ttl)
	}
	o := mintOptions{email: sub + "@" + EmailDomain, name: sub, audience: DefaultAudience}
	for _, opt := range opts {
		opt(&o)
	}
	if groups == nil {
		groups = []string{}
	}
	now := time.Now()
	claims := map[string]any{
		"iss":    i.URL(),
		"aud":    o.audience,
		"sub":    sub,
		"email":  o.email,
		"name":   o.name,
		"groups": groups,
		"jti":    uuid.NewString(),
		"iat":    now.Unix(),
		"exp":    now.Add(ttl).Unix(),
	}
	if o.nonce != "" {
		claims["nonce"] = o.nonce
	}
	tok, err := jwt.Signed(i.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("dev issuer: sign: %w", err)
	}
	return tok, nil
}
