package postgres

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
)

// RFC 7677 section 3: the SCRAM-SHA-256 exchange for user "user", password "pencil".
func TestSCRAMClientRFC7677(t *testing.T) {
	c := &scramClient{password: "pencil", clientNonce: "rOprNGfwEbeRWgbNEkqO", clientFirstBare: "n=user,r=rOprNGfwEbeRWgbNEkqO"}
	serverFirst := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	final, err := c.clientFinal([]byte(serverFirst))
	if err != nil {
		t.Fatal(err)
	}
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if string(final) != want {
		t.Fatalf("client-final\n got %s\nwant %s", final, want)
	}
	if err := c.verifyServerFinal([]byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err != nil {
		t.Fatalf("server signature: %v", err)
	}
	if err := c.verifyServerFinal([]byte("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err == nil {
		t.Fatal("a wrong server signature verified")
	}
}

func TestSCRAMClientRejectsBadServerFirst(t *testing.T) {
	for name, serverFirst := range map[string]string{
		"nonce not extended": "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"same nonce":         "r=NONCE,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"huge iterations":    "r=NONCEx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",
		"zero iterations":    "r=NONCEx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
		"bad salt":           "r=NONCEx,s=***,i=4096",
		"garbage":            "hello",
	} {
		c := &scramClient{password: "pw", clientNonce: "NONCE", clientFirstBare: "n=,r=NONCE"}
		if _, err := c.clientFinal([]byte(serverFirst)); err == nil {
			t.Errorf("%s: accepted %q", name, serverFirst)
		}
	}
	c, mech, err := newSCRAMClient("pw", []string{scramMechanism}, nil)
	if err != nil || mech != scramMechanism || !strings.HasPrefix(string(c.clientFirst()), "n,,n=,r=") {
		t.Fatalf("client-first %q, %s, %v", c.clientFirst(), mech, err)
	}
}

// Over TLS the gateway binds SCRAM to the target's certificate when offered, and
// otherwise says it could have ("y"), so a downgrading middleman is detected by a
// server that supports binding.
func TestSCRAMChannelBindingChoice(t *testing.T) {
	cert := &x509.Certificate{Raw: []byte("certificate bytes"), SignatureAlgorithm: x509.ECDSAWithSHA256}
	st := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	both := []string{scramPlusMechanism, scramMechanism}
	for _, tc := range []struct {
		name       string
		mechs      []string
		tls        *tls.ConnectionState
		wantMech   string
		wantHeader string
	}{
		{"TLS, binding offered", both, st, scramPlusMechanism, "p=tls-server-end-point,,"},
		{"TLS, no binding offered", []string{scramMechanism}, st, scramMechanism, "y,,"},
		{"no TLS", both, nil, scramMechanism, "n,,"},
	} {
		c, mech, err := newSCRAMClient("pw", tc.mechs, tc.tls)
		if err != nil || mech != tc.wantMech || !strings.HasPrefix(string(c.clientFirst()), tc.wantHeader+"n=,r=") {
			t.Errorf("%s: %s %q %v", tc.name, mech, c.clientFirst(), err)
		}
	}
	if _, _, err := newSCRAMClient("pw", []string{scramPlusMechanism}, nil); err == nil {
		t.Error("PLUS only, without TLS: accepted")
	}
	// c= carries the header and the SHA-256 of the certificate.
	c, _, _ := newSCRAMClient("pw", both, st)
	final, err := c.clientFinal([]byte("r=" + c.clientNonce + "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Raw)
	want := "c=" + base64.StdEncoding.EncodeToString(append([]byte("p=tls-server-end-point,,"), sum[:]...)) + ","
	if !strings.HasPrefix(string(final), want) {
		t.Fatalf("client-final %q, want prefix %q", final, want)
	}
}

// Expected value from PostgreSQL's formula, md5(md5(password || user) || salt),
// computed independently (Python hashlib).
func TestMD5Password(t *testing.T) {
	got := md5Password("alice", "secret", [4]byte{'s', 'a', 'l', 't'})
	if got != "md5986e2194384c07f4fd1df4b1351b3e68" {
		t.Fatalf("md5 response %q", got)
	}
}
