package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelfSignedCertificateCreatedOnceAndServes(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := listenerTLS("", "", dir, "gw.internal:6432", log)
	if err != nil {
		t.Fatal(err)
	}
	keyInfo, err := os.Stat(filepath.Join(dir, devKeyFile))
	if err != nil || keyInfo.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, keyInfo.Mode())
	}
	first, _ := os.ReadFile(filepath.Join(dir, devCertFile))
	if _, err := listenerTLS("", "", dir, "gw.internal:6432", log); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, devCertFile)); string(again) != string(first) {
		t.Fatal("certificate regenerated on the second start")
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "gw.internal", "127.0.0.1"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("certificate not valid for %s: %v", host, err)
		}
	}
	// A real handshake with the certificate as the only root.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestConfiguredCertificateUsed(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := ensureSelfSigned(cert, key, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := listenerTLS(cert, key, filepath.Join(dir, "data"), "127.0.0.1:1", log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", devCertFile)); err == nil {
		t.Fatal("a self-signed certificate was generated although one is configured")
	}
	if _, err := listenerTLS(key, key, dir, "", log); err == nil {
		t.Fatal("a key passed as certificate was accepted")
	}
}

// `tapline ca` prints exactly the certificate the listener presents, so agents
// can verify it (sslmode=verify-full) instead of trusting whoever answers.
func TestCertificatePEMIsWhatTheListenerPresents(t *testing.T) {
	dir := t.TempDir()
	if _, err := CertificatePEM("", dir); err == nil || !strings.Contains(err.Error(), "start the gateway") {
		t.Fatalf("before generation: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := listenerTLS("", "", dir, "127.0.0.1:6432", log)
	if err != nil {
		t.Fatal(err)
	}
	out, err := CertificatePEM("", dir)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(out)
	if blk == nil || blk.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("output is not one PEM certificate: %q", out)
	}
	if !bytes.Equal(blk.Bytes, cfg.Certificates[0].Certificate[0]) {
		t.Fatal("printed certificate differs from the one the listener presents")
	}
	// A combined file: the private key must never be printed.
	combined := filepath.Join(dir, "combined.pem")
	key, _ := os.ReadFile(filepath.Join(dir, devKeyFile))
	if err := os.WriteFile(combined, append(append([]byte{}, out...), key...), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := CertificatePEM(combined, "")
	if err != nil || !bytes.Equal(got, out) || bytes.Contains(got, []byte("PRIVATE KEY")) {
		t.Fatalf("combined file: %v, %q", err, got)
	}
}
