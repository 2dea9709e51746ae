package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// chQuery runs SQL on the ClickHouse server's HTTP interface and returns the
// rows as tab-separated fields.
func (s *system) chQuery(sql string) ([][]string, error) {
	resp, err := http.Post("http://"+s.ch.HTTP+"/?query="+url.QueryEscape(sql+" FORMAT TabSeparated"), "text/plain", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("clickhouse: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}

func (s *system) chCount(sql string) (int, error) {
	rows, err := s.chQuery(sql)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	var n int
	_, err = fmt.Sscan(rows[0][0], &n)
	return n, err
}

// check is one row of the report.
type check struct {
	name   string
	result string
	ok     bool
	detail []string // first problems, for the log
}

func (c *check) fail(format string, args ...any) {
	c.ok = false
	if len(c.detail) < 10 {
		c.detail = append(c.detail, fmt.Sprintf(format, args...))
	}
}

// subjectOf maps a marker to the subject of the session that sent it.
var markerRE = regexp.MustCompile(`mk_(chaos[0-9a-f]+)_s([0-9]+)_([0-9])`)

// recorded returns, per subject, the texts of the recorded commands.
func (s *system) recorded(db string) (map[string][]string, error) {
	rows, err := s.chQuery(fmt.Sprintf(`SELECT subject, text FROM %[1]s.commands
		ANY INNER JOIN (SELECT session_id, any(subject) AS subject FROM %[1]s.sessions GROUP BY session_id) USING session_id
		WHERE position(text, 'mk_%[2]s_') > 0`, db, s.run))
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, r := range rows {
		if len(r) == 2 {
			out[r[0]] = append(out[r[0]], r[1])
		}
	}
	return out, nil
}

// completeness: every statement Postgres logged and every command the SSH
// target ran, marked with its session, is in a recorded command of the session
// whose subject sent it, at least as often as the target saw it. Through the
// buffered gateway a statement may be lost, but only in a session whose record
// says so (ended "recording failed", or abandoned by a killed gateway): those
// losses are counted in the third row.
func (s *system) completeness(pgLog string, viaBuffered map[string]bool) (check, check, check) {
	pgc := check{name: "Postgres log statements recorded in their session", ok: true}
	shc := check{name: "sshd commands recorded in their session", ok: true}
	buf := check{name: "buffered gateway: losses reported in the record", ok: true}
	rec, err := s.recorded(s.db)
	if err != nil {
		pgc.fail("%v", err)
		return pgc, shc, buf
	}
	lossy, err := s.lossReported()
	if err != nil {
		buf.fail("%v", err)
		return pgc, shc, buf
	}
	count := func(sub, mark string) int {
		n := 0
		for _, t := range rec[sub] {
			n += strings.Count(t, mark)
		}
		return n
	}
	lost := map[string]int{}
	compare := func(c *check, what, text string) {
		seen := map[string]int{}
		for _, line := range strings.Split(text, "\n") {
			for _, m := range markerRE.FindAllStringSubmatch(line, -1) {
				if m[1] == s.run {
					seen[m[0]]++
				}
			}
		}
		total, missing := 0, 0
		for mark, n := range seen {
			total += n
			m := markerRE.FindStringSubmatch(mark)
			sub := fmt.Sprintf("%s-s%s", m[1], m[2])
			got := count(sub, mark)
			if got >= n {
				continue
			}
			if viaBuffered[sub] && lossy[sub] {
				lost[what] += n - got
				continue
			}
			missing += n - got
			c.fail("%s: target saw it %d times, recorded %d in %s's sessions (buffered %v)", mark, n, got, sub, viaBuffered[sub])
		}
		c.result = fmt.Sprintf("%d seen by the target, %d unrecorded", total, missing)
		if total == 0 {
			c.fail("the target logged no marked statement: the load did not run")
		}
	}
	compare(&pgc, "statements", pgStatements(pgLog))
	ran, _ := os.ReadFile(s.sshDir + "/ran.log")
	compare(&shc, "commands", string(ran))
	buf.result = s.bufferedLosses(lost)
	return pgc, shc, buf
}

// lossReported: subjects with a session whose record admits a loss: ended
// "recording failed" (gap or cut reported) or abandoned (no session.end).
func (s *system) lossReported() (map[string]bool, error) {
	rows, err := s.chQuery(fmt.Sprintf(`SELECT subject FROM %s.sessions GROUP BY session_id, subject
		HAVING startsWith(argMax(end_reason, version), 'recording failed') OR argMax(status, version) = 'abandoned'`, s.db))
	out := map[string]bool{}
	for _, r := range rows {
		out[r[0]] = true
	}
	return out, err
}

// bufferedLosses sums up what the buffered gateway's sessions lost.
func (s *system) bufferedLosses(lost map[string]int) string {
	rows, err := s.chQuery(fmt.Sprintf(`SELECT count(), countIf(failed), countIf(abandoned), sum(missing), countIf(missing > 0) FROM (
		SELECT session_id, startsWith(argMax(end_reason, version), 'recording failed') AS failed, argMax(status, version) = 'abandoned' AS abandoned,
		argMax(last_seq, version) + 1 - argMax(frames, version) AS missing FROM %s.sessions WHERE gateway_id = '%s-gw%d' GROUP BY session_id)`,
		s.db, s.run, bufferedGateway+1))
	if err != nil || len(rows) == 0 {
		return fmt.Sprintf("store: %v", err)
	}
	r := rows[0]
	return fmt.Sprintf("%s sessions: %s ended \"recording failed\", %s abandoned; %s frames missing in %s sessions; unrecorded on the target: %d statements, %d SSH commands",
		r[0], r[1], r[2], r[3], r[4], lost["statements"], lost["commands"])
}

// pgStatements keeps the statement and execute lines of a Postgres log.
func pgStatements(log string) string {
	var b strings.Builder
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "LOG:  statement: ") || strings.Contains(line, "LOG:  execute ") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// seqCheck: per session, stored frames are seq 0..N, none missing, none doubled.
func (s *system) seqCheck() check {
	c := check{name: "frames per session: seq 0..N, no gap, no double", ok: true}
	rows, err := s.chQuery(fmt.Sprintf(`SELECT session_id, min(seq), max(seq), uniqExact(seq), uniqExact(seq, hash)
		FROM %s.frames GROUP BY session_id`, s.db))
	if err != nil {
		c.fail("%v", err)
		return c
	}
	failed, err := s.recordingFailed()
	if err != nil {
		c.fail("%v", err)
		return c
	}
	bad, reported := 0, 0
	for _, r := range rows {
		gap := r[1] != "0" || fmt.Sprint(atoi(r[2])+1) != r[3]
		double := r[3] != r[4]
		// A strict session whose frames Kafka rejected ends with "recording
		// failed" and the gap where they were (docs/recording.md); the
		// lifecycle check requires the processors to have reported it.
		if gap && !double && failed[r[0]] {
			reported++
			continue
		}
		if gap || double {
			bad++
			c.fail("session %s: min %s max %s distinct seq %s distinct (seq,hash) %s", r[0], r[1], r[2], r[3], r[4])
		}
	}
	c.result = fmt.Sprintf("%d sessions, %d with gaps or doubles (+%d ended by a recording failure, gap reported)", len(rows), bad, reported)
	return c
}

// recordingFailed: the sessions the gateway ended because Kafka did not take their frames.
func (s *system) recordingFailed() (map[string]bool, error) {
	rows, err := s.chQuery(fmt.Sprintf(`SELECT session_id FROM %s.sessions GROUP BY session_id
		HAVING startsWith(argMax(end_reason, version), 'recording failed')`, s.db))
	out := map[string]bool{}
	for _, r := range rows {
		out[r[0]] = true
	}
	return out, err
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// reference compares what the pipeline under faults stored with what an
// uninterrupted processor and sink made of the same raw topic.
func (s *system) reference() check {
	c := check{name: "commands and summaries = uninterrupted replay of the raw topic", ok: true}
	q := map[string]string{
		"commands": `SELECT session_id, command_seq, seq_end, kind, text, status, error, rows, exit_status FROM %s.commands FINAL ORDER BY session_id, command_seq`,
		"sessions": `SELECT session_id, argMax(status, version), replaceRegexpOne(argMax(end_reason, version), 'no frames for [^ ]+ ', 'no frames for _ '), argMax(frames, version), argMax(commands, version),
			argMax(last_seq, version), argMax(final_hash, version), argMax(signature_ok, version) FROM %s.sessions GROUP BY session_id ORDER BY session_id`,
	}
	var parts []string
	for _, what := range []string{"commands", "sessions"} {
		got, err1 := s.chQuery(fmt.Sprintf(q[what], s.db))
		want, err2 := s.chQuery(fmt.Sprintf(q[what], s.refDB))
		if err1 != nil || err2 != nil {
			c.fail("%s: %v %v", what, err1, err2)
			continue
		}
		diff := diffRows(got, want)
		for _, d := range diff {
			c.fail("%s: %s", what, d)
		}
		parts = append(parts, fmt.Sprintf("%d %s, %d differ", len(want), what, len(diff)))
	}
	c.result = strings.Join(parts, "; ")
	return c
}

func diffRows(got, want [][]string) []string {
	key := func(r []string) string { return strings.Join(r, "\t") }
	g, w := map[string]int{}, map[string]int{}
	for _, r := range got {
		g[key(r)]++
	}
	for _, r := range want {
		w[key(r)]++
	}
	var out []string
	for k, n := range w {
		if g[k] != n {
			out = append(out, fmt.Sprintf("replay has %q %d times, pipeline %d", k, n, g[k]))
		}
	}
	for k, n := range g {
		if w[k] == 0 {
			out = append(out, fmt.Sprintf("pipeline has %q %d times, replay never", k, n))
		}
	}
	sort.Strings(out)
	return out
}

type verifyReport struct {
	Status    string `json:"status"`
	OK        bool   `json:"ok"`
	Masked    int64  `json:"masked_frames"`
	Signature struct {
		Status string `json:"status"`
	} `json:"signature"`
	MaskedSigs struct {
		Status string `json:"status"`
	} `json:"masked_signatures"`
	Problems []struct {
		Kind string `json:"kind"`
	} `json:"problems"`
}

// gapsOnly: verify found a gap, and nothing but the gap and the end record
// naming the frame before it (as the processors' seq_gap and end_mismatch).
func (v verifyReport) gapsOnly() bool {
	gap := false
	for _, p := range v.Problems {
		switch p.Kind {
		case "gap":
			gap = true
		case "end":
		default:
			return false
		}
	}
	return gap
}

// lifecycle: sessions of a killed gateway that were live when it died are
// abandoned and verify incomplete; every other session ended and verifies ok
// through the query API, with a trusted gateway signature and trusted
// processor signatures on its masked frames; none is left active.
func (s *system) lifecycle(fl *faultLog, token string) check {
	c := check{name: "lifecycle and verify (query API)", ok: true}
	// gap_only: every integrity alert is a seq gap or the end naming the frame before it.
	rows, err := s.chQuery(fmt.Sprintf(`SELECT id, st, gw, reason, started, sig, arrayStringConcat(integ, ' / '),
		arrayAll(x -> startsWith(x, 'gap') OR startsWith(x, 'end'), integ) AND length(integ) > 0
		FROM (SELECT session_id AS id, argMax(status, version) AS st, argMax(gateway_id, version) AS gw, argMax(end_reason, version) AS reason,
		toUnixTimestamp(min(started_at)) AS started, argMax(signature_ok, version) AS sig, argMax(integrity, version) AS integ
		FROM %s.sessions GROUP BY session_id)`, s.db))
	if err != nil {
		c.fail("%v", err)
		return c
	}
	counts := map[string]int{}
	var masked, verified int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan []string)
	// Verify waits on the store more than it computes: four at a time.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				v, msg := s.judge(r, fl, token)
				mu.Lock()
				counts[r[1]]++
				masked += v.Masked
				if v.OK {
					verified++
				}
				if msg != "" {
					c.fail("%s", msg)
				}
				mu.Unlock()
			}
		}()
	}
	for _, r := range rows {
		work <- r
	}
	close(work)
	wg.Wait()
	c.result = fmt.Sprintf("%d sessions: %d ended, %d abandoned, %d denied, %d active; %d verify ok+trusted (%d masked frames, signatures trusted)",
		len(rows), counts["ended"], counts["abandoned"], counts["denied"], counts["active"], verified, masked)
	return c
}

// judge applies the lifecycle rules to one session: the processors' own
// verdict, made while the frames streamed by (the summary's signature_ok and
// integrity alerts), and the query API's /verify over what the store holds.
func (s *system) judge(r []string, fl *faultLog, token string) (verifyReport, string) {
	id, status, gw, reason, sigOK, integrity, gapOnly := r[0], r[1], r[2], r[3], r[5], r[6], r[7] == "1"
	v, err := s.verify(id, token)
	if err != nil {
		return v, fmt.Sprintf("%s: verify: %v", id, err)
	}
	switch status {
	case "abandoned":
		if !s.killedWhileLive(gw, atoi(r[4]), fl) {
			return v, fmt.Sprintf("%s abandoned (%s) but its gateway %s was not killed while it ran", id, reason, gw)
		}
		if integrity != "" || v.Status != "incomplete" || len(v.Problems) > 0 {
			return v, fmt.Sprintf("%s abandoned with integrity alerts %q, verifies %s with %d problems", id, integrity, v.Status, len(v.Problems))
		}
	case "ended", "denied":
		if strings.HasPrefix(reason, "recording failed") {
			// Ended in the protocol's terms; the frames Kafka did not take are a
			// gap, reported by the processors and by verify, and nothing else.
			if sigOK != "1" || integrity != "" && !gapOnly || len(v.Problems) > 0 && !v.gapsOnly() || v.Signature.Status != "trusted" {
				return v, fmt.Sprintf("%s %s (%s): signature_ok %s, integrity %q, verify %s signature %s problems %v",
					id, status, reason, sigOK, integrity, v.Status, v.Signature.Status, v.Problems)
			}
			return v, ""
		}
		if sigOK != "1" || integrity != "" {
			return v, fmt.Sprintf("%s %s (%s): signature_ok %s, integrity alerts %q", id, status, reason, sigOK, integrity)
		}
		if !v.OK || v.Signature.Status != "trusted" || v.Masked > 0 && v.MaskedSigs.Status != "trusted" {
			return v, fmt.Sprintf("%s %s (%s) verifies %s, signature %s, %d masked frames %s, problems %v",
				id, status, reason, v.Status, v.Signature.Status, v.Masked, v.MaskedSigs.Status, v.Problems)
		}
	default:
		return v, fmt.Sprintf("%s left %s", id, status)
	}
	return v, ""
}

func (s *system) killedWhileLive(gwID string, started int, fl *faultLog) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for i, kills := range fl.gatewayKills {
		if gwID != fmt.Sprintf("%s-gw%d", s.run, i+1) {
			continue
		}
		for _, k := range kills {
			if int64(started) <= k.Unix()+1 {
				return true
			}
		}
	}
	return false
}

var verifyClient = &http.Client{Timeout: 2 * time.Minute}

func (s *system) verify(id, token string) (verifyReport, error) {
	var v verifyReport
	req, _ := http.NewRequest("GET", s.apiURL()+"/api/v1/sessions/"+id+"/verify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := verifyClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return v, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// agentSide: every session the agent completed without error is stored as
// ended; sessions that failed failed in the protocol's terms (an error the
// client printed), never by hanging.
func (s *system) agentSide(outs []outcome, fl *faultLog) check {
	c := check{name: "agent-side outcomes", ok: true}
	rows, err := s.chQuery(fmt.Sprintf(`SELECT subject, argMax(status, version), argMax(gateway_id, version), toUnixTimestamp(min(started_at))
		FROM %s.sessions GROUP BY session_id, subject`, s.db))
	if err != nil {
		c.fail("%v", err)
		return c
	}
	stored := map[string][]string{}
	for _, r := range rows {
		st := r[1]
		// The agent saw its session end, then the gateway died before it
		// wrote session.end: the lifecycle check judges these.
		if st == "abandoned" && s.killedWhileLive(r[2], atoi(r[3]), fl) {
			st = "ended"
		}
		stored[r[0]] = append(stored[r[0]], st)
	}
	okN, failed := 0, 0
	for _, o := range outs {
		if o.err != nil {
			failed++
			continue
		}
		okN++
		st := stored[o.sub]
		if len(st) == 0 {
			c.fail("%s %s succeeded for the agent but no session is stored", o.kind, o.sub)
			continue
		}
		for _, x := range st {
			if x != "ended" {
				c.fail("%s %s succeeded for the agent but a session is %s", o.kind, o.sub, x)
			}
		}
	}
	c.result = fmt.Sprintf("%d sessions ran, %d refused or ended by a fault", okN, failed)
	return c
}

// probe measures edge-to-queryable latency: a marked statement through a
// gateway, then the time until its command is in the store.
type probe struct {
	during, outside []time.Duration
}

func (s *system) probes(l *load, fl *faultLog, stop <-chan struct{}) *probe {
	p := &probe{}
	tok := s.token(s.run+"-probe", groupName)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return p
		case <-time.After(2 * time.Second):
		}
		o := outcome{sub: s.run + "-probe", gateway: i % len(s.gateways)}
		mark := fmt.Sprintf("pr_%s_%d", s.run, i)
		t0 := time.Now()
		if err := l.command(ctxTimeout(time.Minute), s.pg.Bin+"/psql", []string{"-X", "-q", l.pgConn(o), "-c", "select '" + mark + "'"}, "PGPASSWORD="+tok); err != nil {
			continue
		}
		deadline := t0.Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			n, err := s.chCount(fmt.Sprintf("SELECT count() FROM %s.commands WHERE position(text, '%s') > 0", s.db, mark))
			if err == nil && n > 0 {
				d := time.Since(t0)
				if fl.overlaps(t0, time.Now()) {
					p.during = append(p.during, d)
				} else {
					p.outside = append(p.outside, d)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("p50 %s p99 %s (%d samples)", at(0.5).Round(10*time.Millisecond), at(0.99).Round(10*time.Millisecond), len(s))
}
