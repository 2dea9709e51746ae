//go:build chdb

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// Values written without naming their columns — psql's INSERT ... VALUES and COPY
// FROM STDIN (text and CSV) without a column list, pgx's prepared positional INSERT
// — into e2e_positional, whose column order the processor's masking config
// declares: the values of its ruled columns (password, api_key) are in the raw
// topic and nowhere downstream, the value of an unruled column is kept, and a value
// written by position into a table the config does not declare is masked whole
// (as positional). Every session verifies.
func TestPostgresPrivacyOfPositionalValues(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "ppos-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	plant := func(what string) string { return what + "-" + randHex(5) }
	insPW, insKey, copyPW, copyKey := plant("pipw"), plant("pikey"), plant("pcpw"), plant("pckey")
	csvPW, csvKey, bindPW, bindKey := plant("pvpw"), plant("pvkey"), plant("pbpw"), plant("pbkey")
	undeclared := plant("pundecl")
	kept := plant("pkeep")
	secrets := []string{insPW, insKey, copyPW, copyKey, csvPW, csvKey, bindPW, bindKey, undeclared}
	const create = "CREATE TEMP TABLE e2e_positional (id int, name text, password text, api_key text, note text)"

	run := h.psqlPrivacy(t, token, sub, fmt.Sprintf("2\tn2\t%s\t%s\tcopied\n", copyPW, copyKey),
		create,
		fmt.Sprintf("INSERT INTO e2e_positional VALUES (1, 'n1', '%s', '%s', '%s')", insPW, insKey, kept),
		"COPY e2e_positional FROM STDIN",
		"CREATE TEMP TABLE e2e_undeclared (id int, thing text)",
		fmt.Sprintf("INSERT INTO e2e_undeclared VALUES (1, '%s')", undeclared),
		"SELECT count(*) FROM e2e_positional",
	)
	if run.err != nil || strings.TrimSpace(run.stdout) != "2" {
		t.Fatalf("psql: %v\nstdout %s\nstderr %s", run.err, run.stdout, run.stderr)
	}
	run = h.psqlPrivacy(t, token, sub, fmt.Sprintf("3,n3,\"%s\",%s,\"a,b\"\n", csvPW, csvKey),
		create, "COPY e2e_positional FROM STDIN (FORMAT csv)", "SELECT count(*) FROM e2e_positional")
	if run.err != nil || strings.TrimSpace(run.stdout) != "1" {
		t.Fatalf("psql csv: %v\nstdout %s\nstderr %s", run.err, run.stdout, run.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := h.pgxConnect(ctx, t, sub, token)
	if _, err := conn.Exec(ctx, create); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Prepare(ctx, "pos_insert", "INSERT INTO e2e_positional VALUES ($1, $2, $3, $4, $5)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "pos_insert", 4, "n4", bindPW, bindKey, "bound"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM e2e_positional WHERE note = 'bound'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("select the bound row: %d %v", n, err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sessions := h.waitSessions(t, sub, 3)

	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), append(secrets, kept))
	for _, s := range secrets {
		if scans[h.topics.Raw].hits[s] == 0 {
			t.Errorf("%q is not in %s: the sessions were not recorded as sent", s, h.topics.Raw)
		}
	}
	// The declared order ties values to their own columns: an unruled one is kept.
	if scans[h.topics.Frames].hits[kept] == 0 {
		t.Errorf("%q, written to the unruled column note, is not in %s: positional values were not tied to declared columns", kept, h.topics.Frames)
	}
	h.notDownstream(t, scans, secrets)
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	for _, s := range sessions {
		if rep := h.verify(t, auditor, s.SessionID); !rep.OK || rep.Masked == 0 {
			t.Errorf("session %s: verify ok=%v masked frames %d problems %v", s.SessionID, rep.OK, rep.Masked, rep.Problems)
		}
	}
	for _, kind := range []string{"column", "param", "positional"} {
		var n int64
		for _, s := range sessions {
			n += h.count(t, "SELECT toInt64(count()) FROM frames FINAL WHERE session_id = {sid:String} AND mapContains(masks, {k:String})",
				clickhouse.Params{"sid": s.SessionID, "k": kind})
		}
		if n == 0 {
			t.Errorf("no frame of the sessions records a %s mask", kind)
		}
	}
}
