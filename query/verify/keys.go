package verify

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
)

// ParsePublicKey reads a trusted gateway key given as 64 hex digits (the form a
// report shows as signature.key), or as a file: PEM "PUBLIC KEY" (PKIX), or the
// gateway's own signing key file (PKCS#8 PEM or a raw 32-byte seed), whose public
// half is taken.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("trusted key %q: neither 64 hex digits nor a readable key file: %w", s, err)
	}
	if len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b).Public().(ed25519.PublicKey), nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("trusted key file %s: not PEM", s)
	}
	var k any
	switch blk.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("trusted key file %s: PEM block %q, want PUBLIC KEY or PRIVATE KEY", s, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("trusted key file %s: %w", s, err)
	}
	switch key := k.(type) {
	case ed25519.PublicKey:
		return key, nil
	case ed25519.PrivateKey:
		return key.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("trusted key file %s: %T is not an Ed25519 key", s, k)
}
