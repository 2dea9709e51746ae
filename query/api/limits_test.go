package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// open starts a request and returns once its headers arrived, i.e. while its
// handler is streaming and holds its slot. cancel ends it.
func (e *env) open(tok, path string) (*http.Response, context.CancelFunc) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, cancel
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b ErrorBody
	json.NewDecoder(resp.Body).Decode(&b)
	return b.Error.Code + ": " + b.Error.Message
}

// longSession records a session of more than one store page, so a frames request
// holds its slot while the store's PageGate is closed.
func longSession(e *env) *sessiontest.Builder {
	b := sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "box"})
	for range 300 {
		b.Server("ssh.channel.data", 0, []byte("x"))
	}
	e.record(b.End("done"), true)
	return b
}

func TestConcurrentRequestLimits(t *testing.T) {
	e := newEnv(t, Config{MaxRequests: 3, MaxRequestsPerIdentity: 2})
	b := longSession(e)
	e.store.PageGate = make(chan struct{})
	path := "/api/v1/sessions/" + b.ID + "/frames"
	alice, bob, carol := e.token("alice", "auditors"), e.token("bob", "auditors"), e.token("carol", "auditors")
	for _, tok := range []string{alice, alice, bob} {
		if resp, _ := e.open(tok, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("request within the limits: %d", resp.StatusCode)
		}
	}
	resp, _ := e.open(alice, path)
	if code := errorCode(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(code, "per identity") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("alice's third request: %d %s", resp.StatusCode, code)
	}
	resp, _ = e.open(carol, path)
	if code := errorCode(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(code, "the server has 3") {
		t.Errorf("carol beyond the total: %d %s", resp.StatusCode, code)
	}
	close(e.store.PageGate)
	// Once the held requests finish, their slots are free again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _ := e.do(carol, http.MethodGet, "/api/v1/sessions/"+b.ID, "", nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots not released: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcurrentFollowLimits(t *testing.T) {
	e := newEnv(t, Config{MaxFollowsPerIdentity: 1})
	live := sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "box"})
	live.Server("ssh.channel.data", 0, []byte("x"))
	e.record(live, false)
	e.store.AddSessions(memstore.Summary(live, schemas.StatusActive))
	tok := e.token("alice")
	follow := "/api/v1/sessions/" + live.ID + "/frames?follow=true"
	resp, cancel := e.open(tok, follow)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first follow: %d", resp.StatusCode)
	}
	second, _ := e.open(tok, "/api/v1/sessions/"+live.ID+"/replay?format=json&follow=true")
	if code := errorCode(t, second); second.StatusCode != http.StatusTooManyRequests || !strings.Contains(code, "follows") {
		t.Errorf("second follow: %d %s", second.StatusCode, code)
	}
	// Reading without following is not a follow.
	if resp, _ := e.do(tok, http.MethodGet, "/api/v1/sessions/"+live.ID+"/frames", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("plain read beside a follow: %d", resp.StatusCode)
	}
	cancel()
	io.Copy(io.Discard, resp.Body)
}

type failingLog struct{}

func (failingLog) Record(Access) error { return errors.New("disk full") }

// access_log_required: no trail, no view. Without it the view is served and the
// failed write logged (fail open).
func TestAccessLogRequiredFailsClosed(t *testing.T) {
	for _, required := range []bool{false, true} {
		store := memstore.NewStore()
		e := newEnvStore(t, Config{AccessLogRequired: required, AccessLog: failingLog{}}, store)
		e.store = store
		b := e.pgSession("alice", e.iss.URL())
		e.record(b, true)
		resp, body := e.do(e.token("alice"), http.MethodGet, "/api/v1/sessions/"+b.ID+"/replay", "", nil)
		switch {
		case required && (resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "access_log_unavailable")):
			t.Errorf("required, trail failing: %d %s", resp.StatusCode, body)
		case required && strings.Contains(string(body), "SELECT"):
			t.Error("required, trail failing: the recording was served")
		case !required && resp.StatusCode != http.StatusOK:
			t.Errorf("not required, trail failing: %d %s", resp.StatusCode, body)
		}
	}
	// Required and writable: served, with the start record written first.
	e := newEnv(t, Config{AccessLogRequired: true})
	b := e.pgSession("alice", e.iss.URL())
	e.record(b, true)
	if resp, body := e.do(e.token("alice"), http.MethodGet, "/api/v1/sessions/"+b.ID+"/replay", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("required, trail writable: %d %s", resp.StatusCode, body)
	}
	if recs := e.access.all(); len(recs) == 0 || recs[0].Event != "api_access_start" {
		t.Errorf("no api_access_start record first: %+v", recs)
	}
}
