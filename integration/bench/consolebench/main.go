//go:build chdb

// Command consolebench measures what the web console waits for, on embedded chDB
// through the real API handlers: a page of the sessions list among 100,000
// sessions, and the session page of a 100,000-frame session (summary, first page of
// commands, and the first screen of its replay), for an SSH and a Postgres session.
// Run by integration/bench/console.sh (make bench); targets: ≤ 300 ms per list
// page, ≤ 1 s until a session page is usable.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgproto3/v2"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/chdb"
)

func main() {
	sessions := flag.Int("sessions", 100000, "sessions in the list")
	frames := flag.Int("frames", 100000, "frames of the large sessions")
	pages := flag.Int("pages", 20, "list pages to time")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := run(*sessions, *frames, *pages); err != nil {
		log.Fatal(err)
	}
}

func run(nSessions, nFrames, nPages int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "consolebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := chdb.Open(dir, clickhouse.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	if err := loadSessions(ctx, store, nSessions); err != nil {
		return err
	}
	sb, scmds := sshSession(nFrames)
	sshID, err := load(ctx, store, sb, scmds)
	if err != nil {
		return err
	}
	pb, pcmds := pgSession(nFrames)
	pgID, err := load(ctx, store, pb, pcmds)
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d sessions and two %d-frame sessions in %s\n", nSessions, nFrames, time.Since(t0).Round(time.Second))

	iss, err := devissuer.Open(dir)
	if err != nil {
		return err
	}
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go iss.Serve(ictx, "")
	v, err := waitVerifier(ctx, iss)
	if err != nil {
		return err
	}
	srv := httptest.NewServer(api.New(api.Config{Logger: slog.Default()}, store, v))
	defer srv.Close()
	tok, err := iss.Mint("bench-auditor", []string{api.DefaultAuditorsGroup}, time.Hour)
	if err != nil {
		return err
	}
	c := &client{base: srv.URL, token: tok}

	list, err := c.listPages(nPages)
	if err != nil {
		return err
	}
	report("sessions list, page of 50 among "+fmt.Sprint(nSessions), list, 300*time.Millisecond)
	for _, s := range []struct{ name, id, format string }{{"SSH", sshID, "asciicast"}, {"Postgres", pgID, "json"}} {
		var runs []time.Duration
		for range 5 {
			d, err := c.sessionPage(s.id, s.format)
			if err != nil {
				return err
			}
			runs = append(runs, d)
		}
		report(fmt.Sprintf("%s session page usable, %d frames", s.name, nFrames), runs, time.Second)
	}
	return nil
}

func report(what string, runs []time.Duration, target time.Duration) {
	slices.Sort(runs)
	p50, worst := runs[len(runs)/2], runs[len(runs)-1]
	verdict := "ok"
	if p50 > target {
		verdict = "OVER TARGET"
	}
	fmt.Printf("%-52s p50 %6.0f ms  max %6.0f ms  target %4.0f ms  %s\n", what,
		ms(p50), ms(worst), ms(target), verdict)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func waitVerifier(ctx context.Context, iss *devissuer.Issuer) (*auth.Verifier, error) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration"); err == nil {
			resp.Body.Close()
			return auth.NewVerifier(ctx, auth.Config{Issuer: iss.URL(), Audience: devissuer.DefaultAudience})
		}
	}
	return nil, fmt.Errorf("dev issuer not answering")
}

type client struct{ base, token string }

func (c *client) get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return resp, err
}

func (c *client) getJSON(path string, v any) error {
	resp, err := c.get(path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// listPages times consecutive pages as the list scrolls (the console asks for 50).
func (c *client) listPages(n int) ([]time.Duration, error) {
	var runs []time.Duration
	cursor := ""
	for range n {
		start := time.Now()
		var page api.SessionList
		if err := c.getJSON("/api/v1/sessions?limit=50&cursor="+cursor, &page); err != nil {
			return nil, err
		}
		runs = append(runs, time.Since(start))
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	return runs, nil
}

// sessionPage times what the page does before it is usable, as the page does it:
// the summary, then the first page of commands and the replay side by side. The
// SSH player shows its first screen from the first 64 KiB of the asciicast, the
// transcript its first statements as they arrive (the first 20 events here).
func (c *client) sessionPage(id, format string) (time.Duration, error) {
	start := time.Now()
	var s api.Session
	if err := c.getJSON("/api/v1/sessions/"+id, &s); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		var cmds api.CommandList
		errs[0] = c.getJSON("/api/v1/sessions/"+id+"/commands?limit=500&from_seq=0", &cmds)
	})
	wg.Go(func() {
		resp, err := c.get("/api/v1/sessions/" + id + "/replay?format=" + format + "&max_rows=200")
		if err != nil {
			errs[1] = err
			return
		}
		defer resp.Body.Close()
		if format == "asciicast" {
			// The player shows the first screen from the first 64 KiB (or all of a
			// shorter cast); the rest arrives while it is usable.
			_, errs[1] = io.CopyN(io.Discard, resp.Body, 64<<10)
			if errs[1] == io.EOF {
				errs[1] = nil
			}
			return
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for n := 0; n < 20 && sc.Scan(); n++ {
		}
		errs[1] = sc.Err()
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

const batchRows = 10000

func loadSessions(ctx context.Context, store clickhouse.Store, n int) error {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i += batchRows {
		var b clickhouse.Batch
		for j := i; j < min(i+batchRows, n); j++ {
			ended := base.Add(time.Duration(j)*time.Minute + 30*time.Second)
			b.Sessions = append(b.Sessions, schemas.Session{
				SessionID: fmt.Sprintf("0190%04x-%04x-7000-8000-%012x", j>>16, j&0xffff, j), Protocol: schemas.Postgres,
				Target: fmt.Sprintf("db-%d", j%20), GatewayID: "gw-bench", Issuer: "https://idp.example", Subject: fmt.Sprintf("agent-%d", j%500),
				StartedAt: base.Add(time.Duration(j) * time.Minute), EndedAt: &ended, Status: schemas.StatusEnded,
				Frames: 40, Commands: 5, LastSeq: 39, Version: 1,
			})
		}
		if err := store.Insert(ctx, &b); err != nil {
			return err
		}
	}
	return nil
}

// load stores a session's frames, its commands and its summary.
func load(ctx context.Context, store clickhouse.Store, b *sessiontest.Builder, cmds []schemas.Command) (string, error) {
	for i := 0; i < len(b.Frames); i += batchRows {
		batch := clickhouse.Batch{Frames: b.Frames[i:min(i+batchRows, len(b.Frames))]}
		if err := store.Insert(ctx, &batch); err != nil {
			return "", err
		}
	}
	sum := memstore.Summary(b, schemas.StatusEnded)
	sum.Commands = int64(len(cmds))
	batch := clickhouse.Batch{Commands: cmds, Sessions: []schemas.Session{sum}}
	return b.ID, store.Insert(ctx, &batch)
}

type ptyReq struct {
	Term                      string
	Cols, Rows, Width, Height uint32
	Modes                     string
}

// sshSession: a shell with one command per 10 frames of typing and output.
func sshSession(frames int) (*sessiontest.Builder, []schemas.Command) {
	b := sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: "https://idp.example", Subject: "agent-bench", Target: "box"})
	b.Step(time.Millisecond).Client("ssh.channel.open", 0, ssh.Marshal(struct{ Type string }{"session"}))
	b.Step(time.Millisecond).Client("ssh.request.pty-req", 0, ssh.Marshal(ptyReq{Term: "xterm", Cols: 120, Rows: 40}))
	b.Step(time.Millisecond).Client("ssh.request.shell", 0, nil)
	var cmds []schemas.Command
	for i := 0; len(b.Frames) < frames-2; i++ {
		text := fmt.Sprintf("echo step-%d", i)
		at := b.Now
		seq := int64(len(b.Frames))
		b.Step(10*time.Millisecond).Client("ssh.channel.data", 0, []byte(text+"\r"))
		for range 9 {
			b.Step(time.Millisecond).Server("ssh.channel.data", 0, []byte(fmt.Sprintf("output line of step %d\r\n", i)))
		}
		cmds = append(cmds, schemas.Command{SessionID: b.ID, CommandSeq: seq, SeqEnd: seq + 9, Protocol: schemas.SSH, Target: "box",
			Subject: "agent-bench", Kind: "shell", Text: text, StartedAt: at, EndedAt: b.Now, Status: "ok"})
	}
	return b.End("agent disconnected"), cmds
}

// pgSession: simple queries of one row each, five frames per statement.
func pgSession(frames int) (*sessiontest.Builder, []schemas.Command) {
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: "https://idp.example", Subject: "agent-bench", Target: "appdb"})
	rd := must((&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("n"), DataTypeOID: 23}}}).Encode(nil))
	rfq := must((&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(nil))
	var cmds []schemas.Command
	for i := 0; len(b.Frames) < frames-2; i++ {
		text := fmt.Sprintf("SELECT %d AS n", i)
		at := b.Now
		seq := int64(len(b.Frames))
		b.Step(time.Millisecond).Client("Query", 0, must((&pgproto3.Query{String: text}).Encode(nil)))
		b.Step(time.Millisecond).Server("RowDescription", 0, rd)
		b.Server("DataRow", 0, must((&pgproto3.DataRow{Values: [][]byte{fmt.Append(nil, i)}}).Encode(nil)))
		b.Server("CommandComplete", 0, must((&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil)))
		b.Server("ReadyForQuery", 0, rfq)
		cmds = append(cmds, schemas.Command{SessionID: b.ID, CommandSeq: seq, SeqEnd: seq + 4, Protocol: schemas.Postgres, Target: "appdb",
			Subject: "agent-bench", Kind: "simple", Text: text, StartedAt: at, EndedAt: b.Now, Status: "ok", Rows: 1})
	}
	return b.End("client closed"), cmds
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
