package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyCreatedOnceWithPrivateMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "gateway.key")
	k1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("key file is not PKCS#8 PEM: %.40q", b)
	}
	k2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("second load returned a different key")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".tapline-key-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestKeyFromRawSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed")
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(ed25519.NewKeyFromSeed(seed)) {
		t.Fatal("seed file gave a different key")
	}
}

func TestKeyRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(path, []byte("not a key"), 0o600)
	if _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "neither PEM") {
		t.Fatalf("garbage key: %v", err)
	}
}

func TestKeyReadableByOthersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.key")
	if _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreate(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Fatalf("mode %#o: err = %v, want a refusal naming chmod 600", mode, err)
		}
	}
}
