package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultKeyRefetchInterval is the least time between two JWKS fetches caused by
// tokens the cached keys cannot verify.
const DefaultKeyRefetchInterval = 10 * time.Second

// maxJWKSBytes bounds a key set document; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// keySet is the issuer's JWKS, cached. go-oidc's RemoteKeySet refetches the set for
// every token it cannot verify, so unauthenticated clients could make the gateway
// hammer the IdP. Here a token whose key ID is cached never causes a fetch (its
// signature is simply bad), and a token with an unknown key ID causes at most one
// fetch per refetch interval, which still picks up a rotated-in key promptly.
type keySet struct {
	url      string
	client   *http.Client
	interval time.Duration

	mu   sync.Mutex
	keys []jose.JSONWebKey

	fetchMu   sync.Mutex // one fetch at a time; waiters reuse its result
	lastFetch time.Time
	lastErr   error
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, joseAlgs())
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := k.cached()
	if payload, ok := verifyWith(jws, keys, kid); ok {
		return payload, nil
	}
	if kid != "" && hasKey(keys, kid) {
		return nil, errors.New("bad signature")
	}
	if keys, err = k.refresh(ctx); err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, keys, kid); ok {
		return payload, nil
	}
	return nil, errors.New("unknown signing key or bad signature")
}

func (k *keySet) cached() []jose.JSONWebKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

// refresh fetches the key set unless that was tried within the interval, in which
// case it returns the cached keys (and the last fetch's error).
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	if !k.lastFetch.IsZero() && time.Since(k.lastFetch) < k.interval {
		return k.cached(), k.lastErr
	}
	k.lastFetch = time.Now()
	keys, err := k.fetch(ctx)
	if err != nil {
		k.lastErr = fmt.Errorf("fetching keys: %w", err)
		return nil, k.lastErr
	}
	k.lastErr = nil
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("%s: %w", k.url, err)
	}
	return set.Keys, nil
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, true
		}
	}
	return nil, false
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	for i := range keys {
		if keys[i].KeyID == kid {
			return true
		}
	}
	return false
}

func joseAlgs() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}
