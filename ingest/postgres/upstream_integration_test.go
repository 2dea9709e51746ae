package postgres

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/ingest/edgelimit"

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

// psql over the pending-handshake cap is refused with the gateway's message. The
// slot is held by a connection this test controls and counted by the gateway
// before psql starts; GSS encryption is off so libpq opens exactly one connection.
func TestPsqlRefusedOverPendingHandshakeCap(t *testing.T) {
	pg := testenv.Postgres(t)
	lim := limiter(t, edgelimit.Config{MaxPendingHandshakes: 1})
	h := newHarness(t, func(c *Config) { c.Limits = lim; c.StartupTimeout = 5 * time.Minute })
	h.dial(t)
	waitFor(t, "the held connection to be counted", func() bool { return lim.Pending() == 1 })
	host, port, _ := net.SplitHostPort(h.addr)
	cmd := exec.Command(filepath.Join(pg.Bin, "psql"), "-X", "-w", "-c", "select 1",
		"host="+host+" port="+port+" dbname=app user=agent sslmode=disable connect_timeout=30")
	cmd.Env = append(os.Environ(), "PGPASSWORD=good", "PGGSSENCMODE=disable")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "too many unauthenticated connections") {
		t.Fatalf("psql over the cap: %v\n%s", err, out)
	}
	if lim.Pending() != 1 {
		t.Fatalf("pending %d after the refusal, want the held 1", lim.Pending())
	}
}
