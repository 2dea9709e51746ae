package devissuer

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tapline/tapline/auth"
)

// serve runs iss.Serve until the test ends and waits until discovery answers.
func serve(t *testing.T, iss *Issuer, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- iss.Serve(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-errc:
			t.Fatalf("Serve: %v", err)
		default:
		}
		resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev issuer at %s not up: %v", iss.URL(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func verifier(t *testing.T, iss *Issuer) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.Config{Issuer: iss.URL(), Audience: DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMintServeVerifyRoundTrip(t *testing.T) {
	iss, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, iss, "")
	v := verifier(t, iss)

	tok, err := iss.Mint("alice", []string{"dba", "ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Issuer != iss.URL() || id.Subject != "alice" || id.Email != "alice@dev.tapline.local" ||
		id.Name != "alice" || !slices.Equal(id.Groups, []string{"dba", "ops"}) {
		t.Fatalf("identity %+v", id)
	}
	if _, err := uuid.Parse(id.TokenID); err != nil {
		t.Fatalf("jti %q is not a UUID: %v", id.TokenID, err)
	}
	if d := time.Until(id.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expiry %s is not ~1h away", id.Expiry)
	}

	other, err := iss.Mint("bob", nil, time.Minute, WithEmail("bob@corp.example"), WithName("Bob B"))
	if err != nil {
		t.Fatal(err)
	}
	id, err = v.Verify(context.Background(), other)
	if err != nil || id.Email != "bob@corp.example" || id.Name != "Bob B" || len(id.Groups) != 0 {
		t.Fatalf("with options: id=%+v err=%v", id, err)
	}
	if id2, _ := v.Verify(context.Background(), tok); id2.TokenID == id.TokenID {
		t.Fatal("two tokens share a jti")
	}

	foreign, err := iss.Mint("alice", nil, time.Hour, WithAudience("someone-else"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), foreign); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("token for another audience: %v", err)
	}
}

func TestTokenMintedBeforeReopenVerifiesAfter(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Minted with no server running, as `tapline token` does.
	tok, err := first.Mint("alice", []string{"dba"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keyFile, urlFile} {
		info, err := os.Stat(filepath.Join(dir, "issuer", f))
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode %#o, want 0600", f, perm)
		}
	}

	second, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.URL() != first.URL() || second.kid != first.kid {
		t.Fatalf("reopen changed identity: url %s -> %s, kid %s -> %s", first.URL(), second.URL(), first.kid, second.kid)
	}
	serve(t, second, "")
	if id, err := verifier(t, second).Verify(context.Background(), tok); err != nil || id.Subject != "alice" {
		t.Fatalf("token from before reopen: id=%+v err=%v", id, err)
	}
}

func TestConcurrentFirstOpenAgrees(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	issuers := make([]*Issuer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { issuers[i], errs[i] = Open(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if issuers[i].kid != issuers[0].kid || issuers[i].URL() != issuers[0].URL() {
			t.Fatalf("open %d got kid %s url %s, open 0 got %s %s", i, issuers[i].kid, issuers[i].URL(), issuers[0].kid, issuers[0].URL())
		}
	}
}

func TestServeOnNewAddressPersistsIt(t *testing.T) {
	dir := t.TempDir()
	iss, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := iss.URL()
	serve(t, iss, "127.0.0.1:0")
	if iss.URL() == old || !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL after serving on a new port: %s (was %s)", iss.URL(), old)
	}
	reopened, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.URL() != iss.URL() {
		t.Fatalf("persisted URL %s, serving at %s", reopened.URL(), iss.URL())
	}
	tok, err := reopened.Mint("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier(t, iss).Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	iss, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = iss.Serve(context.Background(), "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenRefusesKeyReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "issuer", keyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v", err)
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	iss, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Mint("", nil, time.Hour); err == nil {
		t.Error("empty subject accepted")
	}
	if _, err := iss.Mint("alice", nil, 0); err == nil {
		t.Error("zero ttl accepted")
	}
}

func TestDefaultDataDir(t *testing.T) {
	t.Setenv(EnvDataDir, "")
	if d := DefaultDataDir(); d != ".dev" {
		t.Errorf("default %q", d)
	}
	t.Setenv(EnvDataDir, "/var/lib/tapline")
	if d := DefaultDataDir(); d != "/var/lib/tapline" {
		t.Errorf("from env %q", d)
	}
}
