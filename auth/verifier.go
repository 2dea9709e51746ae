package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Verification errors. Messages wrap these with the reason, e.g.
// "invalid token: audience mismatch (...)" or "token expired at 2026-01-02T15:04:05Z".
var (
	// ErrInvalidToken: malformed, bad signature, unknown key, disallowed algorithm,
	// wrong issuer or audience, not yet valid, missing required claims.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpired: the token was valid once; the agent needs a fresh one.
	ErrExpired = errors.New("token expired")
	// ErrIssuerUnavailable: the issuer's discovery document or keys cannot be fetched.
	// Not the agent's fault; a proxy should say "try again later".
	ErrIssuerUnavailable = errors.New("identity provider unavailable")
)

// Defaults for Config.
const (
	DefaultGroupsClaim = "groups"
	DefaultClockSkew   = time.Minute
	// maxTokenLen bounds work on garbage input; real tokens with large group lists
	// stay well below it.
	maxTokenLen = 64 << 10
	// discoveryRetry limits how often Verify retries discovery of an unreachable issuer.
	discoveryRetry = 2 * time.Second
	// maxNBF is year ~5138; any real nbf is far below and int64 conversion is exact.
	maxNBF = 1 << 37
)

// asymmetricAlgs are the only algorithms ever accepted. Symmetric (HS*) and "none"
// are excluded on purpose: with a public JWKS, HS256 would let anyone who knows the
// public key forge tokens.
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the OIDC issuer URL; discovery is at Issuer + "/.well-known/openid-configuration".
	// It must be https, except on loopback hosts (the dev issuer).
	Issuer string `yaml:"issuer"`
	// Audience is the required "aud" value (the client id tokens are issued for).
	Audience string `yaml:"audience"`
	// GroupsClaim names the top-level claim holding the groups (default "groups").
	GroupsClaim string `yaml:"groups_claim"`
	// Algorithms restricts the accepted signing algorithms (a subset of RS*, PS*, ES*,
	// EdDSA). Empty: those the issuer advertises in discovery, or RS256 if it
	// advertises none.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the tolerance applied to exp and nbf (default 1m).
	ClockSkew time.Duration `yaml:"clock_skew"`
	// CAFile is a PEM bundle trusted for the issuer's TLS certificate, in addition
	// to the system roots. Ignored when HTTPClient is set.
	CAFile string `yaml:"ca_file"`
	// KeyRefetchInterval is the least time between two fetches of the issuer's keys
	// caused by a token signed with an unknown key (default 10s).
	KeyRefetchInterval time.Duration `yaml:"key_refetch_interval"`
	// HTTPClient fetches discovery and keys. Default: a client with a 10s timeout.
	HTTPClient *http.Client `yaml:"-"`
}

// Verifier checks tokens against one issuer. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	client *http.Client

	mu       sync.Mutex
	oidc     *oidc.IDTokenVerifier // nil until discovery succeeded
	algs     []string
	lastTry  time.Time
	lastErr  error
	retryGap time.Duration
}

// NewVerifier validates cfg and runs OIDC discovery. If the issuer cannot be reached
// it still returns a Verifier (and logs a warning): discovery is retried on Verify,
// so a gateway can start before its IdP. Configuration errors, and an issuer that
// answers with a different "issuer" value, fail here.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.fillDefaults(); err != nil {
		return nil, err
	}
	client, err := cfg.httpClient()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, client: client, retryGap: discoveryRetry}
	if _, err := v.verifier(ctx); err != nil {
		var mismatch *oidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, fmt.Errorf("auth: issuer %q announces itself as %q in its discovery document; set issuer to exactly that value", mismatch.Provided, mismatch.Discovered)
		}
		slog.Warn("OIDC issuer not reachable yet; will retry on first token", "issuer", cfg.Issuer, "err", err)
	}
	return v, nil
}

func (c *Config) fillDefaults() error {
	if c.Issuer == "" {
		return errors.New("auth: issuer is required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("auth: issuer %q is not an http(s) URL", c.Issuer)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("auth: issuer %q must use https (plain http is allowed only on loopback)", c.Issuer)
	}
	if c.Audience == "" {
		return errors.New("auth: audience is required")
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.KeyRefetchInterval == 0 {
		c.KeyRefetchInterval = DefaultKeyRefetchInterval
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(asymmetricAlgs, a) {
			return fmt.Errorf("auth: signing algorithm %q not supported (use one of %s)", a, strings.Join(asymmetricAlgs, ", "))
		}
	}
	return nil
}

func (c *Config) httpClient() (*http.Client, error) {
	if c.HTTPClient != nil {
		return c.HTTPClient, nil
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if c.CAFile == "" {
		return client, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("auth: issuer CA: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("auth: issuer CA %s holds no PEM certificate", c.CAFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client.Transport = tr
	return client, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Ready runs discovery if it has not succeeded yet; for readiness probes.
func (v *Verifier) Ready(ctx context.Context) error {
	_, err := v.verifier(ctx)
	return err
}

// verifier returns the go-oidc verifier, discovering the issuer first if needed.
// Retries are spaced by retryGap so a flood of logins cannot hammer a down IdP.
func (v *Verifier) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.oidc != nil {
		return v.oidc, nil
	}
	if v.lastErr != nil && time.Since(v.lastTry) < v.retryGap {
		return nil, v.lastErr
	}
	v.lastTry = time.Now()
	cctx := oidc.ClientContext(ctx, v.client)
	provider, err := oidc.NewProvider(cctx, v.cfg.Issuer)
	if err != nil {
		v.lastErr = fmt.Errorf("%w: discovery at %s failed: %w", ErrIssuerUnavailable, v.cfg.Issuer, err)
		return nil, v.lastErr
	}
	var discovered struct {
		Algs    []string `json:"id_token_signing_alg_values_supported"`
		JWKSURI string   `json:"jwks_uri"`
	}
	_ = provider.Claims(&discovered) // optional field; absent means RS256 below
	if discovered.JWKSURI == "" {
		v.lastErr = fmt.Errorf("%w: discovery at %s names no jwks_uri", ErrIssuerUnavailable, v.cfg.Issuer)
		return nil, v.lastErr
	}
	v.algs = acceptedAlgs(v.cfg.Algorithms, discovered.Algs)
	keys := &keySet{url: discovered.JWKSURI, client: v.client, interval: v.cfg.KeyRefetchInterval}
	v.oidc = oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: v.algs,
		// exp and nbf are checked in Verify with a configurable skew and clearer errors.
		SkipExpiryCheck: true,
	})
	v.lastErr = nil
	return v.oidc, nil
}

// acceptedAlgs is the configured list, else the asymmetric algorithms the issuer
// advertises, else RS256 (the OIDC mandatory algorithm).
func acceptedAlgs(configured, advertised []string) []string {
	if len(configured) > 0 {
		return configured
	}
	var algs []string
	for _, a := range advertised {
		if slices.Contains(asymmetricAlgs, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		return []string{oidc.RS256}
	}
	return algs
}

// Verify checks rawToken's signature, issuer, audience, expiry and not-before, and
// returns the identity it carries.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	rawToken = strings.TrimSpace(rawToken)
	if err := checkShape(rawToken); err != nil {
		return Identity{}, err
	}
	idv, err := v.verifier(ctx)
	if err != nil {
		return Identity{}, err
	}
	if err := v.checkAlg(rawToken); err != nil {
		return Identity{}, err
	}
	tok, err := idv.Verify(ctx, rawToken)
	if err != nil {
		return Identity{}, classify(err)
	}
	return v.identity(tok)
}

// checkShape rejects what is not a compact JWS before any parsing or network use.
func checkShape(raw string) error {
	switch {
	case raw == "":
		return fmt.Errorf("%w: empty token", ErrInvalidToken)
	case len(raw) > maxTokenLen:
		return fmt.Errorf("%w: token longer than %d bytes", ErrInvalidToken, maxTokenLen)
	}
	switch strings.Count(raw, ".") {
	case 2:
		return nil
	case 4:
		return fmt.Errorf("%w: encrypted tokens (JWE) are not supported", ErrInvalidToken)
	default:
		return fmt.Errorf("%w: malformed token (not a JWT)", ErrInvalidToken)
	}
}

// checkAlg names a refused algorithm explicitly ("none", HS256, ...); go-jose would
// refuse it too, but with a message an agent cannot act on.
func (v *Verifier) checkAlg(raw string) error {
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("%w: malformed token header", ErrInvalidToken)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return fmt.Errorf("%w: malformed token header", ErrInvalidToken)
	}
	v.mu.Lock()
	algs := v.algs
	v.mu.Unlock()
	if !slices.Contains(algs, hdr.Alg) {
		return fmt.Errorf("%w: signing algorithm %q not accepted (accepted: %s)", ErrInvalidToken, hdr.Alg, strings.Join(algs, ", "))
	}
	return nil
}

// classify maps go-oidc's errors, which are plain strings, onto our kinds and
// short reasons. A test pins each case so a go-oidc upgrade that rewords them fails.
func classify(err error) error {
	msg := strings.TrimPrefix(err.Error(), "oidc: ")
	switch {
	case strings.Contains(msg, "fetching keys"):
		return fmt.Errorf("%w: cannot fetch signing keys: %s", ErrIssuerUnavailable, msg)
	case strings.HasPrefix(msg, "failed to verify signature"):
		return fmt.Errorf("%w: bad signature or unknown signing key", ErrInvalidToken)
	case strings.HasPrefix(msg, "malformed jwt"):
		return fmt.Errorf("%w: malformed token: %s", ErrInvalidToken, strings.TrimPrefix(msg, "malformed jwt: "))
	case strings.Contains(msg, "issued by a different provider"):
		return fmt.Errorf("%w: issuer mismatch (%s)", ErrInvalidToken, msg)
	case strings.Contains(msg, "expected audience"):
		return fmt.Errorf("%w: audience mismatch (%s)", ErrInvalidToken, msg)
	default:
		return fmt.Errorf("%w: %s", ErrInvalidToken, msg)
	}
}

func (v *Verifier) identity(tok *oidc.IDToken) (Identity, error) {
	var p profileClaims
	var all map[string]json.RawMessage
	if err := tok.Claims(&p); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if err := tok.Claims(&all); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if err := v.checkTimes(tok.Expiry, p.NotBefore); err != nil {
		return Identity{}, err
	}
	if tok.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no subject (sub) claim", ErrInvalidToken)
	}
	groups, err := groupsFrom(all, v.cfg.GroupsClaim)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	name := p.Name
	if name == "" {
		name = p.PreferredUsername
	}
	return Identity{
		Issuer:  tok.Issuer,
		Subject: tok.Subject,
		Email:   p.Email,
		Name:    name,
		Groups:  groups,
		TokenID: p.JTI,
		Expiry:  tok.Expiry,
	}, nil
}

func (v *Verifier) checkTimes(exp time.Time, nbf *json.Number) error {
	now := time.Now()
	if exp.IsZero() {
		return fmt.Errorf("%w: no expiry (exp) claim", ErrInvalidToken)
	}
	if now.After(exp.Add(v.cfg.ClockSkew)) {
		return fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if nbf == nil {
		return nil
	}
	secs, err := nbf.Float64()
	if err != nil {
		return fmt.Errorf("%w: nbf claim is not a number", ErrInvalidToken)
	}
	// Converting a float beyond int64 is implementation-defined in Go (it wrapped
	// to the past on amd64, making a far-future nbf valid): refuse it outright.
	if math.IsNaN(secs) || secs >= maxNBF || secs <= -maxNBF {
		return fmt.Errorf("%w: nbf claim %s out of range", ErrInvalidToken, nbf.String())
	}
	notBefore := time.Unix(int64(secs), 0)
	if now.Add(v.cfg.ClockSkew).Before(notBefore) {
		return fmt.Errorf("%w: not valid before %s", ErrInvalidToken, notBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// HTTPClient is the client that reaches the issuer (its CA settings applied), for
// other requests to the same issuer, such as a login's token exchange.
func (v *Verifier) HTTPClient() *http.Client { return v.client }
