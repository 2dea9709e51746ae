//go:build chdb

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/chdb"
)

// TestQueryServerOverCHDB runs `tapline query` on an embedded chDB store that the
// sink's Store wrote, and drives it with the client commands.
func TestQueryServerOverCHDB(t *testing.T) {
	testenv.CHDBLib(t) // skips under -short, fails under CI without the library
	t.Setenv("TAPLINE_API", "")
	t.Setenv("TAPLINE_TOKEN", "")
	dir := t.TempDir()
	iss, err := devissuer.Open(filepath.Join(dir, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go iss.Serve(ctx, "")

	// Write a session as the sink does, then close the store: chDB allows one
	// session per process and the query server opens its own.
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: iss.URL(), Subject: "alice", Target: "app"})
	b.Client("Query", 0, []byte("Q\x00\x00\x00\x0dSELECT 1\x00")).Server("ReadyForQuery", 0, []byte("Z\x00\x00\x00\x05I"))
	b.End("client closed")
	store, err := chdb.Open(filepath.Join(dir, "chdb"), clickhouse.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Insert(ctx, &clickhouse.Batch{Frames: b.Frames, Sessions: []schemas.Session{memstore.Summary(b, schemas.StatusEnded)}}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	keyHex := fmt.Sprintf("%x", b.Key.Public())
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	accessLog := filepath.Join(dir, "access.jsonl")
	served := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetArgs([]string{"query", "--listen", addr, "--chdb-path", filepath.Join(dir, "chdb"),
			"--oidc-issuer", iss.URL(), "--oidc-audience", devissuer.DefaultAudience,
			"--trusted-key", keyHex, "--access-log", accessLog})
		served <- root.ExecuteContext(ctx)
	}()
	api := "http://" + addr
	waitHTTP(t, api+"/healthz", served)

	tok, _ := iss.Mint("alice", nil, time.Hour)
	out, err := run("sessions", "--api", api, "--token", tok)
	if err != nil || !strings.Contains(out, b.ID) {
		t.Errorf("sessions: %v\n%s", err, out)
	}
	out, err = run("verify", b.ID, "--api", api, "--token", tok)
	if err != nil || !strings.Contains(out, "signature  trusted") {
		t.Errorf("verify with the gateway key trusted: %v\n%s", err, out)
	}
	out, err = run("replay", b.ID, "--api", api, "--token", tok)
	if err != nil || !strings.Contains(out, "SELECT 1\n") {
		t.Errorf("replay: %v\n%s", err, out)
	}
	trail, _ := os.ReadFile(accessLog)
	if strings.Count(string(trail), `"event":"api_access"`) < 3 || !strings.Contains(string(trail), `"session_id":"`+b.ID+`"`) {
		t.Errorf("access log:\n%s", trail)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("query server: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("query server did not shut down")
	}
}

func waitHTTP(t *testing.T, url string, served <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-served:
			t.Fatalf("query server exited: %v", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not up", url)
}
