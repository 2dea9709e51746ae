//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/client"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// psqlRun is what psql printed.
type psqlRun struct {
	stdout, stderr string
	err            error
}

// psql runs the real psql through the gateway as the token's subject, one -c per
// statement (each sent as its own simple query, exactly as written), unaligned and
// tuples only, continuing after errors.
func (h *harness) psql(t *testing.T, token, user string, statements ...string) psqlRun {
	t.Helper()
	host, port := splitAddr(t, h.pgAddr)
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0",
		fmt.Sprintf("host=%s port=%s dbname=%s user=%s sslmode=require connect_timeout=10", host, port, pgTarget, user)}
	for _, s := range statements {
		args = append(args, "-c", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.pg.Bin, "psql"), args...)
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+token, "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("psql did not finish in time:\n%s\n%s", stdout.String(), stderr.String())
	}
	return psqlRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// cleanPGEnv is the environment without libpq variables that could redirect psql.
func cleanPGEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// client returns the Go API client for a token.
func (h *harness) client(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.New(h.api.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// get is a raw GET on the API: status and body.
func (h *harness) get(t *testing.T, token, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.api.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

// sql posts a statement to the SQL endpoint.
func (h *harness) sql(t *testing.T, token, query string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(api.SQLRequest{Query: query})
	req, err := http.NewRequest(http.MethodPost, h.api.URL+"/api/v1/sql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// commands returns all of a session's stitched commands from the API.
func (h *harness) commands(t *testing.T, token, id string) []api.Command {
	t.Helper()
	var out []api.Command
	from := int64(0)
	for {
		status, body := h.get(t, token, "/api/v1/sessions/"+url.PathEscape(id)+"/commands?from_seq="+strconv.FormatInt(from, 10))
		if status != http.StatusOK {
			t.Fatalf("commands of %s: %d %s", id, status, body)
		}
		var page api.CommandList
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("commands of %s: %v", id, err)
		}
		out = append(out, page.Commands...)
		if page.NextFromSeq == nil {
			return out
		}
		from = *page.NextFromSeq
	}
}

// replay returns a session's replay in a format.
func (h *harness) replay(t *testing.T, token, id, format string) string {
	t.Helper()
	rc, err := h.client(t, token).Replay(context.Background(), id, client.ReplayOptions{Format: format})
	if err != nil {
		t.Fatalf("replay %s as %s: %v", id, format, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("replay %s: %v", id, err)
	}
	return string(b)
}

// waitSessions waits until the subject has n ended sessions whose commands and
// frames are all in the store, and returns them oldest first. It asks as an auditor,
// so it sees what the pipeline stored whoever the subject is.
func (h *harness) waitSessions(t *testing.T, subject string, n int) []api.Session {
	t.Helper()
	return h.waitSessionsWithin(t, subject, n, pipelineWait)
}

// waitSessionsWithin is waitSessions with its own limit, for sessions carrying a lot
// of data.
func (h *harness) waitSessionsWithin(t *testing.T, subject string, n int, limit time.Duration) []api.Session {
	t.Helper()
	auditor := h.token(t, "e2e-waiter", auditors)
	c := h.client(t, auditor)
	var out []api.Session
	err := poll(limit, func() error {
		list, err := c.Sessions(context.Background(), client.SessionQuery{Subject: subject})
		if err != nil {
			return err
		}
		if len(list.Sessions) != n {
			return fmt.Errorf("%d sessions of %s listed, want %d", len(list.Sessions), subject, n)
		}
		for _, s := range list.Sessions {
			if err := h.complete(t, auditor, s); err != nil {
				return err
			}
		}
		out = list.Sessions
		return nil
	})
	if err != nil {
		t.Fatalf("sessions of %s did not reach the API within %s: %v", subject, limit, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 { // the API lists newest first
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// complete says why a session is not fully stored yet, or nil.
func (h *harness) complete(t *testing.T, token string, s api.Session) error {
	if s.Status != schemas.StatusEnded {
		return fmt.Errorf("session %s is %s", s.SessionID, s.Status)
	}
	if got := len(h.commands(t, token, s.SessionID)); int64(got) != s.Commands {
		return fmt.Errorf("session %s: %d of %d commands stored", s.SessionID, got, s.Commands)
	}
	n, last, err := h.frameCount(s.SessionID)
	if err != nil {
		return err
	}
	if n != s.LastSeq+1 || last != s.LastSeq {
		return fmt.Errorf("session %s: %d frames up to seq %d stored, want up to %d", s.SessionID, n, last, s.LastSeq)
	}
	return nil
}

// frameCount reads the frames table directly.
func (h *harness) frameCount(id string) (n, last int64, err error) {
	rows, err := h.conn.Query(context.Background(),
		"SELECT toInt64(count()), toInt64(max(seq)) FROM frames FINAL WHERE session_id = {sid:String}",
		clickhouse.Params{"sid": id}, nil)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, 0, fmt.Errorf("no count for %s", id)
	}
	err = rows.Scan(&n, &last)
	return n, last, err
}

// exec runs a statement on the store's connection (not through the API).
func (h *harness) exec(t *testing.T, sql string) {
	t.Helper()
	if err := h.conn.Exec(context.Background(), sql, nil); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// count runs a SELECT returning one integer on the store's connection.
func (h *harness) count(t *testing.T, sql string, params clickhouse.Params) int64 {
	t.Helper()
	rows, err := h.conn.Query(context.Background(), sql, params, nil)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var n int64
	if !rows.Next() {
		t.Fatalf("%s: no row", sql)
	}
	if err := rows.Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// frame reads one stored frame as the query API does.
func (h *harness) frame(t *testing.T, id string, seq int64) schemas.Frame {
	t.Helper()
	var out *schemas.Frame
	err := h.store.Frames(context.Background(), id, seq, seq, func(f *schemas.Frame) error {
		c := *f
		out = &c
		return nil
	})
	if err != nil || out == nil {
		t.Fatalf("frame %s/%d: %v (found %v)", id, seq, err, out != nil)
	}
	return *out
}

// frames reads a session's stored frames.
func (h *harness) frames(t *testing.T, id string) []schemas.Frame {
	t.Helper()
	var out []schemas.Frame
	err := h.store.Frames(context.Background(), id, 0, 1<<62, func(f *schemas.Frame) error {
		out = append(out, *f)
		return nil
	})
	if err != nil {
		t.Fatalf("frames of %s: %v", id, err)
	}
	return out
}
