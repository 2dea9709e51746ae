//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// An email and a card number typed into a psql session are recorded in the raw
// topic and nowhere downstream: not in the processed topics, not in any table.
func TestMaskingEndToEnd(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "carol-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	email := "planted." + randHex(4) + "@example.org"
	card := luhnCard(t)
	secrets := []string{email, card}

	run := h.psql(t, token, sub,
		fmt.Sprintf("SELECT '%s' AS contact, '%s' AS card_no", email, card),
		"CREATE TEMP TABLE e2e_customers (id int, contact text, card_no text)",
		fmt.Sprintf("INSERT INTO e2e_customers VALUES (1, '%s', '%s')", email, card),
		"SELECT contact, card_no FROM e2e_customers",
	)
	want := fmt.Sprintf("%[1]s|%[2]s\n%[1]s|%[2]s\n", email, card)
	if run.err != nil || run.stdout != want {
		t.Fatalf("psql printed %q (stderr %q, %v); want the planted values twice", run.stdout, run.stderr, run.err)
	}
	sess := h.waitSessions(t, sub, 1)[0]

	// Recorded: the raw topic has them, in the client's statements and the rows.
	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), secrets)
	for _, s := range secrets {
		if raw := scans[h.topics.Raw]; raw.hits[s] == 0 {
			t.Errorf("%q is not in %s (%d records read): the session was not recorded as typed", s, h.topics.Raw, raw.records)
		}
	}
	for _, topic := range processed {
		if scans[topic].records == 0 {
			t.Errorf("%s: no records read", topic)
		}
	}
	// Masked: no processed topic holds them, nor the processors' own state, nor
	// any row of any table, in any column.
	h.notDownstream(t, scans, secrets)
	tables := h.tables(t)
	// The scan finds what is there: the subject, in the session.start frame.
	if n := h.count(t, "SELECT toInt64(count()) FROM frames WHERE position(formatRow('TSVRaw', *), {s:String}) > 0",
		clickhouse.Params{"s": sub}); n == 0 {
		t.Errorf("the row scan does not find the subject %q in frames", sub)
	}
	if len(tables) < 3 {
		t.Errorf("scanned tables %v; want at least frames, commands and sessions", tables)
	}
	// And the masking is recorded where it happened, by type.
	for _, kind := range []string{"email", "card"} {
		p := clickhouse.Params{"sid": sess.SessionID, "k": kind}
		if h.count(t, "SELECT toInt64(count()) FROM frames FINAL WHERE session_id = {sid:String} AND mapContains(masks, {k:String})", p) == 0 {
			t.Errorf("no stored frame of %s records a %s mask", sess.SessionID, kind)
		}
		if h.count(t, "SELECT toInt64(count()) FROM commands FINAL WHERE session_id = {sid:String} AND mapContains(masks, {k:String})", p) == 0 {
			t.Errorf("no stored command of %s records a %s mask", sess.SessionID, kind)
		}
	}
	// The masked session still verifies: masking keeps the chain.
	auditor := h.token(t, "e2e-mask-auditor", auditors)
	if rep := h.verify(t, auditor, sess.SessionID); !rep.OK || rep.Masked == 0 {
		t.Errorf("masked session verify: ok=%v masked frames %d problems %v", rep.OK, rep.Masked, rep.Problems)
	}
}

// topicScan is what a topic holds: records read, and records holding each needle.
type topicScan struct {
	records int
	hits    map[string]int
}

// processedTopics are the topics downstream of the raw one, the processors'
// state included: what is written there has been masked.
func (h *harness) processedTopics() []string {
	return []string{h.topics.Frames, h.topics.Commands, h.topics.Sessions, h.topics.Audit, h.topics.AuditOCSF, h.topics.State}
}

// notDownstream reports each secret that a processed topic (in scans, read by
// scanTopics over them) or any row of any table holds.
func (h *harness) notDownstream(t *testing.T, scans map[string]*topicScan, secrets []string) {
	t.Helper()
	for _, topic := range h.processedTopics() {
		for _, s := range secrets {
			if n := scans[topic].hits[s]; n > 0 {
				t.Errorf("%q is in %d record(s) of %s", s, n, topic)
			}
		}
	}
	for _, table := range h.tables(t) {
		for _, s := range secrets {
			n := h.count(t, "SELECT toInt64(count()) FROM "+table+" WHERE position(formatRow('TSVRaw', *), {s:String}) > 0",
				clickhouse.Params{"s": s})
			if n > 0 {
				t.Errorf("%q is in %d row(s) of table %s", s, n, table)
			}
		}
	}
}

// scanTopics reads topics from the start (committed records only) until they have
// been idle for a while, counting per topic the records whose key or value holds
// each needle.
func (h *harness) scanTopics(t *testing.T, topics []string, needles []string) map[string]*topicScan {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	scans := map[string]*topicScan{}
	for _, topic := range topics {
		scans[topic] = &topicScan{hits: map[string]int{}}
	}
	total := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		if errs := fetches.Errors(); len(errs) > 0 && !errors.Is(errs[0].Err, context.DeadlineExceeded) {
			t.Fatalf("reading %s: %v", errs[0].Topic, errs[0].Err)
		}
		if fetches.NumRecords() == 0 && total > 0 {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) {
			total++
			s := scans[r.Topic]
			s.records++
			for _, n := range needles {
				if bytes.Contains(r.Value, []byte(n)) || bytes.Contains(r.Key, []byte(n)) {
					s.hits[n]++
				}
			}
		})
	}
	return scans
}

// tables lists the store's tables.
func (h *harness) tables(t *testing.T) []string {
	t.Helper()
	rows, err := h.conn.Query(context.Background(),
		"SELECT name FROM system.tables WHERE database = currentDatabase() AND NOT is_temporary ORDER BY name", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	return out
}

// luhnCard returns a random 16-digit Visa-style number with a valid Luhn check digit.
func luhnCard(t *testing.T) string {
	t.Helper()
	digits := []byte{'4'}
	for len(digits) < 15 {
		n, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatal(err)
		}
		digits = append(digits, byte('0'+n.Int64()))
	}
	// Double every second digit from the right of the full number, i.e. from the
	// rightmost of these 15.
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	card := string(digits) + string(rune('0'+(10-sum%10)%10))
	if strings.Count(card, card[:1]) == len(card) {
		return luhnCard(t) // all one digit is not taken for a card
	}
	return card
}
