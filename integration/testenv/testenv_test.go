package testenv_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/integration/testenv"
)

func ed25519Key(t *testing.T) (ed25519.PublicKey, ssh.Signer, error) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, s, nil
}

func TestParseEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	content := "# comment\n\n" +
		"TAPLINE_KAFKA_BROKERS=127.0.0.1:1234\n" +
		"TAPLINE_SSH_HOST_PUBKEY='ssh-ed25519 AAAA x'\n" +
		"QUOTED='it'\\''s'\n" +
		"export DQ=\"a b\"\n" +
		"EMPTY=\n" +
		"EQ=a=b\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := testenv.ParseEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"TAPLINE_KAFKA_BROKERS":   "127.0.0.1:1234",
		"TAPLINE_SSH_HOST_PUBKEY": "ssh-ed25519 AAAA x",
		"QUOTED":                  "it's",
		"DQ":                      "a b",
		"EMPTY":                   "",
		"EQ":                      "a=b",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d keys, want %d: %v", len(got), len(want), got)
	}
}

func TestDSNEscapes(t *testing.T) {
	pg := testenv.PG{Host: "127.0.0.1", Port: 5432, DB: "app", SSLCert: "/x y/crt"}
	if got, want := pg.DSN("u", "p@ss:/?", ""), "postgres://u:p%40ss%3A%2F%3F@127.0.0.1:5432/app?sslmode=disable"; got != want {
		t.Errorf("DSN = %s, want %s", got, want)
	}
	if got, want := pg.TLSDSN("u", "p", "db"), "postgres://u:p@127.0.0.1:5432/db?sslmode=verify-full&sslrootcert=%2Fx%20y%2Fcrt"; got != want {
		t.Errorf("TLSDSN = %s, want %s", got, want)
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := testenv.FreePort(t)
		if p < 15000 || p > 32767 {
			t.Fatalf("FreePort = %d, want 15000-32767", p)
		}
		if seen[p] {
			t.Fatalf("FreePort handed out %d twice", p)
		}
		seen[p] = true
	}
}
