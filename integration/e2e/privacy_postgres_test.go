//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// Values of ruled columns (password, api_key, ssn: built-in column rules) written
// by psql and pgx in every way SQL carries them — INSERT literals, UPDATE SET,
// WHERE = and IN, COPY FROM STDIN (text from psql, binary from pgx), parameters of
// prepared statements — and a password set with psql's \password are recorded in
// the raw topic and nowhere downstream; every session still verifies. None of the
// planted values looks like anything a detector finds: only the column rules catch
// them.
func TestPostgresPrivacyOfRuledColumns(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "pat-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	plant := func(what string) string { return what + "-" + randHex(5) }
	insertPW, updateKey, whereSSN, inSSN := plant("ipw"), plant("ukey"), plant("wssn"), plant("inssn")
	copyPW, bindKey, bindSSN, binCopyPW := plant("cpw"), plant("bkey"), plant("bssn"), plant("bcpw")
	secrets := []string{insertPW, updateKey, whereSSN, inSSN, copyPW, bindKey, bindSSN, binCopyPW,
		"SCRAM-SHA-256$"} // the verifier psql's \password sends, salted: its prefix stands for it

	run := h.psqlPrivacy(t, token, sub, copyPW+"\tnote-1\n",
		"CREATE TEMP TABLE acct (id serial, password text, api_key text, ssn text, note text)",
		fmt.Sprintf("INSERT INTO acct (password, note) VALUES ('%s', 'a'), ('x', 'b')", insertPW),
		fmt.Sprintf("UPDATE acct SET api_key = '%s' WHERE note = 'a'", updateKey),
		fmt.Sprintf("SELECT count(*) FROM acct WHERE ssn = '%s' OR ssn IN ('%s', 'other')", whereSSN, inSSN),
		"COPY acct (password, note) FROM STDIN",
		`\password e2e_no_such_role_`+randHex(3),
	)
	// \password asks twice (from stdin, as there is no terminal), then fails on the
	// missing role: the ALTER ROLE with the verifier was sent all the same.
	if !strings.Contains(run.stderr, "does not exist") {
		t.Fatalf("psql: %v\nstdout %s\nstderr %s", run.err, run.stdout, run.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := h.pgxConnect(ctx, t, sub, token)
	for _, q := range []string{"CREATE TEMP TABLE acct (id int, password text, api_key text, ssn text)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO acct (id, api_key, ssn) VALUES ($1, $2, $3)", 1, bindKey, bindSSN); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM acct WHERE api_key = $1", bindKey).Scan(&n); err != nil || n != 1 {
		t.Fatalf("select by bound key: %d %v", n, err)
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"acct"}, []string{"id", "password"}, pgx.CopyFromRows([][]any{{2, binCopyPW}})); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sessions := h.waitSessions(t, sub, 2)

	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), secrets)
	for _, s := range secrets {
		if scans[h.topics.Raw].hits[s] == 0 {
			t.Errorf("%q is not in %s: the sessions were not recorded as sent", s, h.topics.Raw)
		}
	}
	h.notDownstream(t, scans, secrets)
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	for _, s := range sessions {
		if rep := h.verify(t, auditor, s.SessionID); !rep.OK || rep.Masked == 0 {
			t.Errorf("session %s: verify ok=%v masked frames %d problems %v", s.SessionID, rep.OK, rep.Masked, rep.Problems)
		}
		if n := h.count(t, "SELECT toInt64(count()) FROM frames FINAL WHERE session_id = {sid:String} AND mapContains(masks, 'column')",
			clickhouse.Params{"sid": s.SessionID}); n == 0 {
			t.Errorf("session %s: no frame records a column mask", s.SessionID)
		}
	}
}

// pgxConnect logs in to the Postgres target through the gateway with pgx, as
// user with the OIDC token as password.
func (h *harness) pgxConnect(ctx context.Context, t *testing.T, user, token string) *pgx.Conn {
	t.Helper()
	host, port := splitAddr(t, h.pgAddr)
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=%s user=%s password=%s sslmode=require connect_timeout=10",
		host, port, pgTarget, user, token))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// psqlPrivacy runs psql with stdin and without a controlling terminal (its own
// session), so that \password reads the new password from stdin.
func (h *harness) psqlPrivacy(t *testing.T, token, user, copyData string, statements ...string) psqlRun {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pw := "Typed-" + randHex(4)
	cmd.Stdin = strings.NewReader(copyData + "\\.\n" + pw + "\n" + pw + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("psql did not finish in time:\n%s\n%s", stdout.String(), stderr.String())
	}
	return psqlRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// Secrets the detectors find (an address, a card number, a JWT), pasted into psql
// a few bytes at a time as SQL literals of a column no rule names, are recorded in
// the raw topic and nowhere downstream, in the statements and in the rows read
// back; the session verifies. psql sends a statement as one message once it is
// complete, so the chunks reach the gateway whole.
func TestPostgresPrivacyOfChunkedPaste(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "pcp-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	secrets := []string{"pcp." + randHex(4) + "@example.org", luhnCard(t),
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi" + randHex(6) + "." + randHex(10)}
	script := fmt.Sprintf("CREATE TEMP TABLE notes (id serial, note text);\nINSERT INTO notes (note) VALUES ('mail %s'), ('card %s'), ('jwt %s');\nSELECT note FROM notes ORDER BY id;\n",
		secrets[0], secrets[1], secrets[2])

	host, port := splitAddr(t, h.pgAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.pg.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=%s port=%s dbname=%s user=%s sslmode=require connect_timeout=10", host, port, pgTarget, sub))
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+token, "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(script); i += 5 {
		if _, err := stdin.Write([]byte(script[i:min(i+5, len(script))])); err != nil {
			t.Fatalf("writing to psql: %v", err)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "card "+secrets[1]) {
		t.Fatalf("psql: %v\n%s", err, out.String())
	}
	sess := h.waitSessions(t, sub, 1)[0]

	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), secrets)
	for _, s := range secrets {
		if scans[h.topics.Raw].hits[s] == 0 {
			t.Errorf("%q is not in %s: the session was not recorded as sent", s, h.topics.Raw)
		}
	}
	h.notDownstream(t, scans, secrets)
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	if rep := h.verify(t, auditor, sess.SessionID); !rep.OK || rep.Masked == 0 {
		t.Errorf("verify: ok=%v masked frames %d problems %v", rep.OK, rep.Masked, rep.Problems)
	}
}
