package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"github.com/spf13/pflag"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// cliEnv is a query API (dev issuer tokens, in-memory store) for the client commands.
type cliEnv struct {
	url   string
	iss   *devissuer.Issuer
	store *memstore.Store
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	t.Setenv("TAPLINE_API", "")
	t.Setenv("TAPLINE_TOKEN", "")
	iss, err := devissuer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go iss.Serve(ctx, "")
	for i := 0; ; i++ {
		resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v, err := auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	e := &cliEnv{iss: iss, store: memstore.NewStore()}
	srv := httptest.NewServer(api.New(api.Config{Logger: slog.New(slog.DiscardHandler)}, e.store, v))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *cliEnv) token(t *testing.T, sub string, groups ...string) string {
	tok, err := e.iss.Mint(sub, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// run runs the binary's command line and returns its output and error. Subcommands
// are built once per process, so their flags are reset to defaults afterwards.
func run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	for _, c := range root.Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				sv.Replace(nil)
			} else {
				f.Value.Set(f.DefValue)
			}
			f.Changed = false
		})
	}
	return out.String(), err
}

func (e *cliEnv) pgSession(sub string) *sessiontest.Builder {
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: sub, Target: "app"})
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte { return sessiontest.Must(m.Encode(nil)) }
	b.Step(time.Millisecond).Client("Query", 0, enc(&pgproto3.Query{String: "UPDATE accounts SET active = false"}))
	b.Step(time.Second).Server("CommandComplete", 0, enc(&pgproto3.CommandComplete{CommandTag: []byte("UPDATE 3")}))
	b.Server("ReadyForQuery", 0, enc(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	b.End("client closed")
	e.store.AddFrames(b.Frames...)
	e.store.AddSessions(memstore.Summary(b, schemas.StatusEnded))
	return b
}

func (e *cliEnv) sshSession(sub string) (*sessiontest.Builder, string) {
	b := sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: e.iss.URL(), Subject: sub, Target: "box"})
	b.Step(time.Millisecond).Client("ssh.channel.open", 0, ssh.Marshal(struct{ T string }{"session"}))
	b.Client("ssh.request.shell", 0, nil)
	out := "$ uptime\r\n 10:00:00 up 1 day\r\n$ "
	b.Step(2*time.Second).Server("ssh.channel.data", 0, []byte(out[:10]))
	b.Step(time.Second).Server("ssh.channel.data", 0, []byte(out[10:]))
	b.End("client closed")
	e.store.AddFrames(b.Frames...)
	s := memstore.Summary(b, schemas.StatusEnded)
	s.StartedAt = s.StartedAt.Add(time.Minute) // listed before the Postgres one
	e.store.AddSessions(s)
	return b, out
}

func TestSessionsCommand(t *testing.T) {
	e := newCLIEnv(t)
	pg := e.pgSession("alice")
	sh, _ := e.sshSession("alice")
	other := e.pgSession("bob")
	tok := e.token(t, "alice")

	out, err := run("sessions", "--api", e.url, "--token", tok)
	if err != nil {
		t.Fatal(err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "STARTED") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(lines[1], sh.ID) || !strings.Contains(lines[2], pg.ID) || strings.Contains(out, other.ID) {
		t.Errorf("alice's table, newest first, without bob's session:\n%s", out)
	}
	if !strings.Contains(lines[2], "POSTGRES") || !strings.Contains(lines[2], "1s") {
		t.Errorf("row %q", lines[2])
	}

	t.Setenv("TAPLINE_API", e.url)
	t.Setenv("TAPLINE_TOKEN", e.token(t, "audrey", "auditors"))
	out, err = run("sessions", "--protocol", "postgres", "--limit", "1", "--json")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"protocol":"POSTGRES"`) || !strings.Contains(out, "more sessions match") {
		t.Errorf("auditor, one postgres session as JSON: %v\n%s", err, out)
	}
	if _, err := run("sessions", "--since", "yesterday-ish"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("bad --since: %v", err)
	}
}

func TestSessionsNeedsAToken(t *testing.T) {
	e := newCLIEnv(t)
	_, err := run("sessions", "--api", e.url)
	if err == nil || !strings.Contains(err.Error(), "TAPLINE_TOKEN") {
		t.Errorf("no token: %v", err)
	}
	_, err = run("sessions", "--api", e.url, "--token", "garbage")
	if err == nil || !strings.Contains(err.Error(), "invalid_token") {
		t.Errorf("bad token: %v", err)
	}
}

func TestReplayCommand(t *testing.T) {
	e := newCLIEnv(t)
	pg := e.pgSession("alice")
	sh, raw := e.sshSession("alice")
	tok := e.token(t, "alice")

	// Not a terminal and no --speed: the replay is written out as the API sends it.
	out, err := run("replay", pg.ID, "--api", e.url, "--token", tok)
	if err != nil || !strings.Contains(out, "UPDATE accounts SET active = false\nUPDATE 3\n") {
		t.Errorf("dumped transcript: %v\n%s", err, out)
	}
	out, err = run("replay", sh.ID, "--api", e.url, "--token", tok, "--format", "asciicast")
	if err != nil || !strings.HasPrefix(out, `{"version":2,`) {
		t.Errorf("dumped asciicast: %v\n%s", err, out)
	}

	// --speed plays: the terminal gets the SSH output itself, timed (3s at 100x).
	start := time.Now()
	out, err = run("replay", sh.ID, "--api", e.url, "--token", tok, "--speed", "100")
	if err != nil || out != raw {
		t.Errorf("played SSH output %q, want %q (%v)", out, raw, err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("3s of recording played in %v at 100x", d)
	}
	out, err = run("replay", pg.ID, "--api", e.url, "--token", tok, "--speed", "1000")
	if err != nil || !strings.Contains(out, "UPDATE 3") {
		t.Errorf("played transcript: %v\n%s", err, out)
	}

	if _, err := run("replay", pg.ID, "--api", e.url, "--token", e.token(t, "bob")); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("bob replaying alice's session: %v", err)
	}
	if _, err := run("replay", pg.ID, "--api", e.url, "--token", tok, "--format", "asciicast"); err == nil {
		t.Error("asciicast of a Postgres session accepted")
	}
}

func TestVerifyCommand(t *testing.T) {
	e := newCLIEnv(t)
	good := e.pgSession("alice")
	tok := e.token(t, "alice")
	// The test server trusts no keys: an intact session is untrusted, which fails
	// unless the caller accepts it.
	out, err := run("verify", good.ID, "--api", e.url, "--token", tok)
	if err == nil || !strings.Contains(out, "session "+good.ID+": UNTRUSTED") || !strings.Contains(err.Error(), "--accept-untrusted") {
		t.Errorf("intact, no trusted keys: %v\n%s", err, out)
	}
	out, err = run("verify", good.ID, "--api", e.url, "--token", tok, "--accept-untrusted")
	if err != nil || !strings.Contains(out, "session "+good.ID+": UNTRUSTED") {
		t.Errorf("intact, untrusted accepted: %v\n%s", err, out)
	}

	bad := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "app"})
	bad.Client("Query", 0, []byte("Q....SELECT 1")).Server("ReadyForQuery", 0, []byte("Z....I")).End("client closed")
	bad.Frames[1].Payload = []byte("Q....SELECT 2")
	e.store.AddFrames(bad.Frames...)
	e.store.AddSessions(memstore.Summary(bad, schemas.StatusEnded))
	out, err = run("verify", bad.ID, "--api", e.url, "--token", tok)
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "seq 1: digest") {
		t.Errorf("altered: %v\n%s", err, out)
	}

	live := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "alice", Target: "app"})
	live.Client("Query", 0, []byte("Q....SELECT 1"))
	e.store.AddFrames(live.Frames...)
	out, err = run("verify", live.ID, "--api", e.url, "--token", tok, "--json")
	if err == nil || !strings.Contains(out, `"status": "incomplete"`) {
		t.Errorf("live: %v\n%s", err, out)
	}
}
