// Package keyfile reads and creates the Ed25519 signing keys of tapline's components
// (gateways sign session ends, processors sign masked frames) and parses the public
// keys verifiers trust.
//
// A private key file holds PKCS#8 PEM or a raw 32-byte seed. It is created with mode
// 0600 on first start and refused on load when group or others may read it: anyone
// who can read it can forge evidence.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreate reads the Ed25519 private key at path, or creates it (PKCS#8 PEM,
// mode 0600) when the file does not exist.
func LoadOrCreate(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, err
	}
	return parsePrivate(path, b)
}

// Load reads the Ed25519 private key at path; it must exist.
func Load(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	return parsePrivate(path, b)
}

// readPrivate reads a private key file after checking that only its owner can read it.
func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o lets others read it; run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return b, nil
}

func parsePrivate(path string, b []byte) (ed25519.PrivateKey, error) {
	if len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b), nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("signing key %s: neither PEM nor a %d-byte seed", path, ed25519.SeedSize)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an Ed25519 key", path, k)
	}
	return ek, nil
}

func create(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	// Write a temporary file and link it into place: the key appears whole or not at
	// all, and if another process created it meanwhile, we use theirs.
	f, err := os.CreateTemp(filepath.Dir(path), ".tapline-key-*")
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return Load(path)
	} else if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return key, nil
}

// ParsePublic reads a trusted public key given as 64 hex digits (the form verify
// reports show), standard base64, or a file: PEM "PUBLIC KEY" (PKIX), or a signing
// key file (PKCS#8 PEM or a raw 32-byte seed), whose public half is taken.
func ParsePublic(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("trusted key %q: neither 64 hex digits, base64 nor a readable key file: %w", s, err)
	}
	if len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b).Public().(ed25519.PublicKey), nil
	}
	return parsePEMPublic(s, b)
}

func parsePEMPublic(name string, b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("trusted key file %s: not PEM", name)
	}
	var k any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("trusted key file %s: PEM block %q, want PUBLIC KEY or PRIVATE KEY", name, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("trusted key file %s: %w", name, err)
	}
	switch key := k.(type) {
	case ed25519.PublicKey:
		return key, nil
	case ed25519.PrivateKey:
		return key.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("trusted key file %s: %T is not an Ed25519 key", name, k)
}

// ParsePublicList parses each entry with ParsePublic.
func ParsePublicList(entries []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, e := range entries {
		k, err := ParsePublic(e)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}
