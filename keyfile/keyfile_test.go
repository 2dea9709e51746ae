package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "processor.key")
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("created with mode %04o, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k, again) {
		t.Error("second start made a new key")
	}
	pub, err := ParsePublic(path)
	if err != nil || !bytes.Equal(pub, k.Public().(ed25519.PublicKey)) {
		t.Errorf("ParsePublic(key file) = %x, %v", pub, err)
	}
}

// A key others can read is refused with what to do about it.
func TestLoadRefusesReadableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v, want a refusal naming chmod 600", err)
	}
}

func TestParsePublic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	want := k.Public().(ed25519.PublicKey)
	for _, in := range []string{hex.EncodeToString(want), " " + hex.EncodeToString(want) + "\n"} {
		got, err := ParsePublic(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ParsePublic(%q) = %x, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "abcd", filepath.Join(t.TempDir(), "missing")} {
		if _, err := ParsePublic(bad); err == nil {
			t.Errorf("ParsePublic(%q) accepted", bad)
		}
	}
}

func FuzzParsePublic(f *testing.F) {
	f.Add("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	f.Add("-----BEGIN PUBLIC KEY-----")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, "/\\") {
			return // not a file name the fuzzer should open
		}
		k, err := ParsePublic(s)
		if err == nil && len(k) != 32 {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}
