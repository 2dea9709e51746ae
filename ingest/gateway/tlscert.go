package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Self-signed development certificate files in data_dir.
const (
	devCertFile = "postgres-tls.crt"
	devKeyFile  = "postgres-tls.key"
)

// listenerTLS loads the configured certificate, or one generated into dataDir
// when none is configured (development).
func listenerTLS(certFile, keyFile, dataDir, listen string, log *slog.Logger) (*tls.Config, error) {
	if certFile == "" {
		certFile, keyFile = filepath.Join(dataDir, devCertFile), filepath.Join(dataDir, devKeyFile)
		created, err := ensureSelfSigned(certFile, keyFile, listen)
		if err != nil {
			return nil, err
		}
		log.Warn("listener uses a self-signed certificate; set its tls_cert and tls_key in production", "listen", listen,
			"cert", certFile, "created", created)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("postgres TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ensureSelfSigned creates a one-year ECDSA certificate for localhost, the
// loopback addresses and the listen host unless both files exist.
func ensureSelfSigned(certFile, keyFile, listen string) (bool, error) {
	if fileExists(certFile) && fileExists(keyFile) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "tapline gateway (self-signed)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return false, err
	}
	if err := writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return false, err
	}
	return true, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFile writes atomically so a crash never leaves half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// CertificatePEM returns the certificates the Postgres listener presents: those in
// tlsCert, or the one generated into dataDir when tlsCert is empty. Agents trust
// it with PGSSLROOTCERT and sslmode=verify-full.
func CertificatePEM(tlsCert, dataDir string) ([]byte, error) {
	path := tlsCert
	if path == "" {
		path = filepath.Join(dataDir, devCertFile)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && tlsCert == "" {
		return nil, fmt.Errorf("no generated certificate in %s yet: start the gateway (or tapline dev) once, then run this again", dataDir)
	}
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(blk)...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}
