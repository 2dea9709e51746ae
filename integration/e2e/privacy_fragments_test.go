//go:build chdb

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// A Query larger than the gateway's fragment limit (recorder.DefaultFragmentBytes,
// which the e2e gateway keeps) is recorded as several fragment frames, and so is
// the DataRow that answers it. An address and a card number planted so that a
// fragment boundary cuts them, in the Query and in its DataRow, are in the raw
// topic and nowhere downstream; the session verifies.
func TestPostgresPrivacyOfFragmentedMessages(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "pfr-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	secrets := []string{"pfrag." + randHex(4) + "@example.org", luhnCard(t)}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := h.pgxConnect(ctx, t, sub, token)
	const fb = recorder.DefaultFragmentBytes
	for _, s := range secrets {
		// Query payload: 'Q', length, "SELECT '" — the value starts at byte 13;
		// DataRow payload: 'D', length, count, value length — at byte 11. Either
		// way the secret straddles byte fb, the first fragment boundary.
		pad := fb - len(s)/2 - 13
		value := strings.Repeat("word ", pad/5) + strings.Repeat("w", pad%5-1) + " " + s + " " + strings.Repeat("tail ", 200)
		if strings.Index(value, s)+13 >= fb || strings.Index(value, s)+len(s)+13 <= fb {
			t.Fatalf("the secret does not straddle the boundary")
		}
		res, err := conn.PgConn().Exec(ctx, "SELECT '"+value+"' AS v").ReadAll()
		if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != value {
			t.Fatalf("large query: %v", err)
		}
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sess := h.waitSessions(t, sub, 1)[0]

	// A boundary cuts each secret, so the raw topic holds its halves, in two
	// records; downstream no record holds either half.
	var needles []string
	for _, s := range secrets {
		needles = append(needles, s, s[:len(s)/2], s[len(s)/2:])
	}
	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), needles)
	for i, s := range needles {
		if i%3 != 0 && scans[h.topics.Raw].hits[s] == 0 {
			t.Errorf("%q is not in %s: the session was not recorded as sent", s, h.topics.Raw)
		}
	}
	h.notDownstream(t, scans, needles)
	p := clickhouse.Params{"sid": sess.SessionID}
	if n := h.count(t, "SELECT toInt64(count()) FROM frames FINAL WHERE session_id = {sid:String} AND fragment > 0", p); n < 4 {
		t.Errorf("%d fragment frames; want the two queries and their rows fragmented", n)
	}
	if n := h.count(t, "SELECT toInt64(count()) FROM frames FINAL WHERE session_id = {sid:String} AND mapContains(masks, 'fragment_edge')", p); n == 0 {
		t.Errorf("no frame records a fragment_edge mask")
	}
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	if rep := h.verify(t, auditor, sess.SessionID); !rep.OK || rep.Masked == 0 {
		t.Errorf("verify: ok=%v masked frames %d problems %v", rep.OK, rep.Masked, rep.Problems)
	}
}
