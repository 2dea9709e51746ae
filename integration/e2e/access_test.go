//go:build chdb

package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Someone else's session is indistinguishable from a session that does not exist;
// auditors read it; SQL is read-only and for auditors only.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	owner := "bob-" + randHex(3)
	other := "mallory-" + randHex(3)
	ownerTok := h.token(t, owner, pgGroup)
	otherTok := h.token(t, other, pgGroup) // same group, still not the owner
	auditorTok := h.token(t, "audrey-"+randHex(3), auditors)

	if run := h.psql(t, ownerTok, owner, "SELECT 'owned by bob' AS note"); run.err != nil || strings.TrimSpace(run.stdout) != "owned by bob" {
		t.Fatalf("psql: %v %q %q", run.err, run.stdout, run.stderr)
	}
	sess := h.waitSessions(t, owner, 1)[0]
	missing, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}

	for _, suffix := range []string{"", "/commands", "/frames", "/replay", "/replay?format=json", "/verify"} {
		theirs, theirsBody := h.get(t, otherTok, "/api/v1/sessions/"+sess.SessionID+suffix)
		none, noneBody := h.get(t, otherTok, "/api/v1/sessions/"+missing.String()+suffix)
		if theirs != http.StatusNotFound || none != http.StatusNotFound || !bytes.Equal(theirsBody, noneBody) {
			t.Errorf("%s: another's session answers %d %q, a nonexistent one %d %q; want the same 404",
				suffix, theirs, theirsBody, none, noneBody)
		}
		if status, body := h.get(t, auditorTok, "/api/v1/sessions/"+sess.SessionID+suffix); status != http.StatusOK {
			t.Errorf("%s: the auditor gets %d %s", suffix, status, body)
		}
		if status, body := h.get(t, ownerTok, "/api/v1/sessions/"+sess.SessionID+suffix); status != http.StatusOK {
			t.Errorf("%s: the owner gets %d %s", suffix, status, body)
		}
	}
	_, body := h.get(t, auditorTok, "/api/v1/sessions/"+sess.SessionID)
	var got api.Session
	if err := json.Unmarshal(body, &got); err != nil || got.Subject != owner {
		t.Errorf("the auditor reads subject %q (%v), want %q", got.Subject, err, owner)
	}
	// A search for the owner's sessions by someone else is an empty page.
	if status, body := h.get(t, otherTok, "/api/v1/sessions?subject="+owner); status != http.StatusOK || strings.Contains(string(body), sess.SessionID) {
		t.Errorf("another's search for %s: %d %s", owner, status, body)
	}

	// SQL: auditors read; nobody writes or changes the schema through it.
	countQ := "SELECT count() AS n FROM frames WHERE session_id = '" + sess.SessionID + "'"
	status, body := h.sql(t, auditorTok, countQ)
	var res api.SQLResult
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil || len(res.Rows) != 1 || !sameNumber(res.Rows[0][0], sess.LastSeq+1) {
		t.Fatalf("auditor SQL %q: %d %s; want the session's %d frames", countQ, status, body, sess.LastSeq+1)
	}
	if status, body := h.sql(t, otherTok, countQ); status != http.StatusForbidden {
		t.Errorf("non-auditor SQL: %d %s; want 403", status, body)
	}
	if status, body := h.sql(t, ownerTok, countQ); status != http.StatusForbidden {
		t.Errorf("the owner's SQL (not an auditor): %d %s; want 403", status, body)
	}
	for _, q := range []string{
		"INSERT INTO frames (session_id, seq) VALUES ('" + sess.SessionID + "', 999)",
		"insert into frames select * from frames where session_id = '" + sess.SessionID + "'",
		"DROP TABLE frames",
		"TRUNCATE TABLE commands",
		"ALTER TABLE frames DELETE WHERE session_id = '" + sess.SessionID + "'",
		"ALTER TABLE frames UPDATE payload = 'x' WHERE 1",
		"CREATE TABLE e2e_evil (x Int32) ENGINE = Memory",
		"RENAME TABLE frames TO frames_gone",
		"SELECT 1; DROP TABLE frames",
		"SELECT 1 SETTINGS readonly = 0",
		"WITH x AS (SELECT 1) INSERT INTO frames (session_id, seq) VALUES ('" + sess.SessionID + "', 999)",
		"/* comment */ DELETE FROM frames WHERE session_id = '" + sess.SessionID + "'",
	} {
		status, body := h.sql(t, auditorTok, q)
		if status != http.StatusBadRequest {
			t.Errorf("auditor SQL %q: %d %s; want 400", q, status, body)
		}
	}
	// Nothing changed: same frames, every table still there.
	if n, _, err := h.frameCount(sess.SessionID); err != nil || n != sess.LastSeq+1 {
		t.Errorf("after the refused statements the session has %d frames (%v), want %d", n, err, sess.LastSeq+1)
	}
	for _, table := range []string{"frames", "commands", "sessions"} {
		if h.count(t, "SELECT toInt64(count()) FROM system.tables WHERE database = currentDatabase() AND name = {t:String}", clickhouse.Params{"t": table}) != 1 {
			t.Errorf("table %s is gone", table)
		}
	}
	if h.count(t, "SELECT toInt64(count()) FROM system.tables WHERE database = currentDatabase() AND name = 'e2e_evil'", nil) != 0 {
		t.Error("the SQL endpoint created a table")
	}
}

// sameNumber compares a JSON number (or numeric string, for 64-bit values) with n.
func sameNumber(v any, n int64) bool {
	switch x := v.(type) {
	case float64:
		return int64(x) == n
	case string:
		return x == strings.TrimSpace(x) && x == itoa(n)
	}
	return false
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
