package postgres

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

// targetServer is a Server with only what connectTarget uses.
func targetServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Verifier: fakeVerifier{}, Recorder: &fakeRecorder{}, StartupTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Against the real PostgreSQL over TLS, the gateway's SCRAM login is bound to the
// target's certificate (SCRAM-SHA-256-PLUS): a middleman holding another
// certificate could not relay it. PostgreSQL checks the binding data, so a wrong
// hash fails the login.
func TestTargetLoginUsesChannelBindingOverTLS(t *testing.T) {
	pg := testenv.Postgres(t)
	pem, err := os.ReadFile(pg.SSLCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in", pg.SSLCert)
	}
	gwPassword := func() (string, error) { return pg.GWPassword, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := targetServer(t)
	for _, tc := range []struct {
		mode TLSMode
		want string
	}{
		{TLSVerifyFull, scramPlusMechanism},
		{TLSRequire, scramPlusMechanism},
		{TLSDisable, scramMechanism},
	} {
		target := &Target{Name: "app", Address: pg.Addr(), Database: pg.DB, User: pg.GWUser, Password: gwPassword, TLS: tc.mode, RootCAs: pool}
		up, err := s.connectTarget(ctx, target, map[string]string{"application_name": "scram-plus-test"})
		if err != nil {
			t.Fatalf("tls %s: %v", tc.mode, err)
		}
		up.conn.Close()
		if up.auth != tc.want {
			t.Errorf("tls %s: logged in with %q, want %q", tc.mode, up.auth, tc.want)
		}
	}
}

// A target asking for md5 gets no answer unless its configuration allows it.
func TestTargetMD5RefusedUnlessAllowed(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := targetServer(t)
	target := &Target{Name: "legacy", Address: pg.Addr(), Database: pg.DB, User: pg.MD5User, TLS: TLSDisable,
		Password: func() (string, error) { return pg.MD5Password, nil }}
	_, err := s.connectTarget(ctx, target, nil)
	var te *targetError
	if !errors.As(err, &te) || te.code != codeRejected || !strings.Contains(te.msg, "md5") || !strings.Contains(te.msg, "allow_md5: true") {
		t.Fatalf("md5 target without allow_md5: %v, want a refusal naming allow_md5", err)
	}
	target.AllowMD5 = true
	up, err := s.connectTarget(ctx, target, nil)
	if err != nil {
		t.Fatalf("md5 target with allow_md5: %v", err)
	}
	up.conn.Close()
	if up.auth != "md5" {
		t.Fatalf("auth %q", up.auth)
	}
}
