//go:build chdb

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
)

// A psql session through the gateway is found in the API under the token's
// identity, with its statements, row counts and error, and its replay shows the
// rows psql printed.
func TestPsqlSessionInAPI(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "alice-" + randHex(3)
	token := h.token(t, sub, pgGroup, "readers")
	stmts := []string{
		"CREATE TEMP TABLE e2e_items (id int PRIMARY KEY, name text, price numeric(6,2))",
		"INSERT INTO e2e_items VALUES (1, 'alpha', 10.50), (2, 'beta', 7.25), (3, 'gamma', 99.99)",
		"SELECT id, name, price FROM e2e_items ORDER BY id",
		"SELECT * FROM e2e_no_such_table",
	}
	run := h.psql(t, token, sub, stmts...)
	wantRows := [][]string{{"1", "alpha", "10.50"}, {"2", "beta", "7.25"}, {"3", "gamma", "99.99"}}
	if got := psqlRows(run.stdout); !slices.EqualFunc(got, wantRows, slices.Equal) {
		t.Fatalf("psql printed %q (stderr %q, %v); want the three rows", run.stdout, run.stderr, run.err)
	}
	if !strings.Contains(run.stderr, `relation "e2e_no_such_table" does not exist`) {
		t.Fatalf("psql stderr %q lacks the failing statement's error", run.stderr)
	}

	sess := h.waitSessions(t, sub, 1)[0]
	if sess.Subject != sub || sess.Email != sub+"@e2e.example.net" || sess.Issuer != h.iss.URL() ||
		!slices.Equal(sess.Groups, []string{pgGroup, "readers"}) {
		t.Errorf("identity: subject %q email %q issuer %q groups %q; want %q, %q, %q, [%s readers]",
			sess.Subject, sess.Email, sess.Issuer, sess.Groups, sub, sub+"@e2e.example.net", h.iss.URL(), pgGroup)
	}
	if sess.Protocol != string(schemas.Postgres) || sess.Target != pgTarget || sess.GatewayID != "e2e-gw" {
		t.Errorf("session: protocol %q target %q gateway %q", sess.Protocol, sess.Target, sess.GatewayID)
	}
	// The owner reads it too, not only auditors.
	own, err := h.client(t, token).Session(context.Background(), sess.SessionID)
	if err != nil || own.SessionID != sess.SessionID {
		t.Fatalf("the owner reading their session: %v", err)
	}

	cmds := h.commands(t, token, sess.SessionID)
	var texts []string
	for _, c := range cmds {
		texts = append(texts, c.Text)
	}
	if !slices.Equal(texts, stmts) {
		t.Fatalf("commands %q, want exactly the statements psql sent %q", texts, stmts)
	}
	for i, want := range []struct {
		status string
		rows   int64
	}{{"ok", 0}, {"ok", 3}, {"ok", 3}, {"error", 0}} {
		c := cmds[i]
		if c.Status != want.status || c.Rows != want.rows || c.Kind != "query" {
			t.Errorf("command %d %q: kind %q status %q rows %d error %q; want query, %s, %d rows",
				i, c.Text, c.Kind, c.Status, c.Rows, c.Error, want.status, want.rows)
		}
	}
	if e := cmds[3].Error; !strings.Contains(e, "42P01") || !strings.Contains(e, `relation "e2e_no_such_table" does not exist`) {
		t.Errorf("failing command's error %q; want SQLSTATE 42P01 and the server's message", e)
	}
	for _, c := range cmds[:3] {
		if c.Error != "" {
			t.Errorf("command %q carries an error %q", c.Text, c.Error)
		}
	}

	if sess.Commands != int64(len(stmts)) {
		t.Errorf("session summary counts %d commands, want %d", sess.Commands, len(stmts))
	}
	if rep := h.verify(t, token, sess.SessionID); !rep.OK || rep.Signature.Status != verify.SigTrusted {
		t.Errorf("verify: %+v", rep)
	}

	transcript := h.replay(t, token, sess.SessionID, "text")
	table, tag := transcriptResult(t, transcript, stmts[2])
	if !slices.Equal(table[0], []string{"id", "name", "price"}) {
		t.Errorf("transcript header %q", table[0])
	}
	if !slices.EqualFunc(table[1:], wantRows, slices.Equal) {
		t.Errorf("transcript rows %q; psql printed %q", table[1:], wantRows)
	}
	if tag != "SELECT 3" {
		t.Errorf("transcript tag after the SELECT: %q", tag)
	}
	for _, want := range []string{stmts[1], "INSERT 0 3", `relation "e2e_no_such_table" does not exist`, "session by " + sub} {
		if !strings.Contains(transcript, want) {
			t.Errorf("transcript lacks %q:\n%s", want, transcript)
		}
	}
}

// psqlRows splits psql's unaligned, tuples-only output into rows of cells.
func psqlRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "|"))
		}
	}
	return rows
}

// transcriptResult finds statement in a text transcript and returns the table
// printed after it (header first, cells trimmed) and the command tag below it.
func transcriptResult(t *testing.T, transcript, statement string) ([][]string, string) {
	t.Helper()
	lines := strings.Split(transcript, "\n")
	i := slices.Index(lines, statement)
	if i < 0 || i+3 >= len(lines) {
		t.Fatalf("statement %q not in the transcript:\n%s", statement, transcript)
	}
	cells := func(line string) []string {
		parts := strings.Split(line, "|")
		for j := range parts {
			parts[j] = strings.TrimSpace(parts[j])
		}
		return parts
	}
	table := [][]string{cells(lines[i+1])}
	if !strings.HasPrefix(lines[i+2], "----") {
		t.Fatalf("no table after %q:\n%s", statement, transcript)
	}
	j := i + 3
	for ; j < len(lines) && !strings.HasPrefix(lines[j], "("); j++ {
		table = append(table, cells(lines[j]))
	}
	tag := ""
	if j+1 < len(lines) {
		tag = lines[j+1]
	}
	return table, tag
}
