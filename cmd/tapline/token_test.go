package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
)

func runTokenCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newTokenCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return strings.TrimSpace(out.String()), err
}

// The token is minted before anything serves the data dir (tapline token on its
// own), and again while the issuer serves it (tapline dev running); both verify.
func TestTokenCommandOutputVerifies(t *testing.T) {
	dir := t.TempDir()
	before, err := runTokenCmd(t, "--sub", "alice", "--groups", "dba", "--groups", "ops,sre", "--ttl", "10m", "--data-dir", dir, "--email", "alice@corp.example")
	if err != nil {
		t.Fatal(err)
	}

	iss, err := devissuer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Serve(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })
	waitIssuerUp(t, iss.URL()+"/.well-known/openid-configuration")

	during, err := runTokenCmd(t, "--sub", "bob", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}

	v, err := auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(ctx, before)
	if err != nil {
		t.Fatalf("token minted before serving: %v", err)
	}
	if id.Subject != "alice" || id.Email != "alice@corp.example" || !slices.Equal(id.Groups, []string{"dba", "ops", "sre"}) {
		t.Fatalf("identity %+v", id)
	}
	if d := time.Until(id.Expiry); d > 10*time.Minute || d < 9*time.Minute {
		t.Fatalf("expiry %s not ~10m away", id.Expiry)
	}
	if id, err := v.Verify(ctx, during); err != nil || id.Subject != "bob" || len(id.Groups) != 0 {
		t.Fatalf("token minted while serving: id=%+v err=%v", id, err)
	}
}

func TestTokenCommandRequiresSubject(t *testing.T) {
	_, err := runTokenCmd(t, "--groups", "dba", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "sub") {
		t.Fatalf("err = %v", err)
	}
}

func waitIssuerUp(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A gateway token must not open the query API and the other way round.
func TestTokenCommandAudiencePerRole(t *testing.T) {
	dir := t.TempDir()
	iss, err := devissuer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Serve(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })
	waitIssuerUp(t, iss.URL()+"/.well-known/openid-configuration")
	gw, err := auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.GatewayAudience})
	if err != nil {
		t.Fatal(err)
	}
	query, err := auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.QueryAudience})
	if err != nil {
		t.Fatal(err)
	}
	gwTok, err := runTokenCmd(t, "--sub", "alice", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	queryTok, err := runTokenCmd(t, "--for", "query", "--sub", "alice", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Verify(ctx, gwTok); err != nil {
		t.Fatalf("gateway token at the gateway: %v", err)
	}
	if _, err := query.Verify(ctx, queryTok); err != nil {
		t.Fatalf("query token at the API: %v", err)
	}
	if _, err := query.Verify(ctx, gwTok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("gateway token at the API: %v, want it refused", err)
	}
	if _, err := gw.Verify(ctx, queryTok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("query token at the gateway: %v, want it refused", err)
	}
	if _, err := runTokenCmd(t, "--for", "everything", "--sub", "alice", "--data-dir", dir); err == nil {
		t.Fatal("--for everything accepted")
	}
}
