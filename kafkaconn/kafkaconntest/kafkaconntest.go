// Package kafkaconntest starts an in-process Kafka (kfake) that requires TLS and
// SCRAM-SHA-256, for tests of clients configured through kafkaconn.
package kafkaconntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tapline/tapline/kafkaconn"
)

// User and Password are the cluster's SCRAM-SHA-256 superuser.
const (
	User     = "tapline"
	Password = "s3cret-scram"
)

// Secure is a running cluster and the settings that reach it.
type Secure struct {
	Cluster *kfake.Cluster
	Brokers []string
	// Security uses the test CA, SCRAM-SHA-256 and a password file.
	Security kafkaconn.Security
	CAFile   string
	Dir      string // holds ca.pem and password
}

// Start runs a kfake cluster that accepts only TLS connections (certificate for
// 127.0.0.1 and localhost signed by a fresh CA) and SCRAM-SHA-256 as User.
// It stops when the test ends.
func Start(t testing.TB, opts ...kfake.Opt) *Secure {
	t.Helper()
	dir := t.TempDir()
	pki := newPKI(t)
	pwFile := filepath.Join(dir, "password")
	must(t, os.WriteFile(pwFile, []byte(Password+"\n"), 0o600))
	s := start(t, dir, pki, &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12},
		append([]kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", User, Password)}, opts...))
	s.Security.SASL = &kafkaconn.SASL{Mechanism: "SCRAM-SHA-256", Username: User, PasswordFile: pwFile}
	return s
}

// StartMutualTLS runs a kfake cluster that requires a client certificate signed
// by its CA (no SASL); Security names such a certificate in cert_file/key_file.
func StartMutualTLS(t testing.TB, opts ...kfake.Opt) *Secure {
	t.Helper()
	dir := t.TempDir()
	pki := newPKI(t)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	s := start(t, dir, pki, &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, opts)
	certPEM, keyPEM := pki.issue(t, "tapline-client", x509.ExtKeyUsageClientAuth)
	s.Security.TLS.CertFile = filepath.Join(dir, "client.pem")
	s.Security.TLS.KeyFile = filepath.Join(dir, "client-key.pem")
	must(t, os.WriteFile(s.Security.TLS.CertFile, certPEM, 0o600))
	must(t, os.WriteFile(s.Security.TLS.KeyFile, keyPEM, 0o600))
	return s
}

func start(t testing.TB, dir string, pki *pki, serverTLS *tls.Config, opts []kfake.Opt) *Secure {
	caFile := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.ca.Raw}), 0o600))
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.TLS(serverTLS)}, opts...)...)
	must(t, err)
	t.Cleanup(c.Close)
	return &Secure{Cluster: c, Brokers: c.ListenAddrs(), CAFile: caFile, Dir: dir,
		Security: kafkaconn.Security{TLS: &kafkaconn.TLS{CAFile: caFile}}}
}

// pki is a fresh CA and a server certificate it signed for 127.0.0.1 and localhost.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	server tls.Certificate
	serial int64
}

func newPKI(t testing.TB) *pki {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tapline test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(der)
	must(t, err)
	p := &pki{ca: ca, caKey: caKey, serial: 1}
	certPEM, keyPEM := p.issue(t, "kafka", x509.ExtKeyUsageServerAuth)
	p.server, err = tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	return p
}

// issue returns a PEM certificate and key signed by the CA.
func (p *pki) issue(t testing.TB, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	p.serial++
	now := time.Now()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, p.ca, &key.PublicKey, p.caKey)
	must(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
