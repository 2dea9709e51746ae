package pipeline

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var alice = schemas.SessionStart{Issuer: "https://idp", Subject: "alice", Email: "alice@corp.example", Groups: []string{"dba"},
	TokenID: "tok-1", Target: "app", ClientAddr: "10.0.0.5:51000"}

var processorKey = sessiontest.NewKey(42)

func newProcessor(t testing.TB) *Processor {
	t.Helper()
	m, err := mask.New(mask.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The test sessions' gateway keys (sessiontest.NewKey(1) and (2)) are trusted.
	keys := integrity.Keys{sessiontest.NewKey(1).Public().(ed25519.PublicKey), sessiontest.NewKey(2).Public().(ed25519.PublicKey)}
	p, err := New(Config{Masker: m, TrustedKeys: keys, SigningKey: processorKey})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func enc(t testing.TB, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pgSession records a small Postgres session with secrets in it.
func pgSession(t testing.TB, start schemas.SessionStart, t0 time.Time) *sessiontest.Session {
	s := sessiontest.Start(schemas.Postgres, start, sessiontest.NewKey(1), t0)
	s.Add(schemas.Client, "Query", 0, enc(t, &pgproto3.Query{String: "SELECT id, email, password_hash FROM users WHERE email = 'bob@example.com'"}))
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id")}, {Name: []byte("email")}, {Name: []byte("password_hash")}}}
	s.Add(schemas.Server, "RowDescription", 0, enc(t, rd))
	s.Add(schemas.Server, "DataRow", 0, enc(t, &pgproto3.DataRow{Values: [][]byte{[]byte("7"), []byte("bob@example.com"), []byte("$2b$10$hash")}}))
	s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}))
	s.Add(schemas.Server, "ReadyForQuery", 0, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	s.Add(schemas.Client, "Query", 0, enc(t, &pgproto3.Query{String: "ALTER ROLE app PASSWORD 'n3w-s3cret'"}))
	s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("ALTER ROLE")}))
	s.Add(schemas.Server, "ReadyForQuery", 0, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	s.Add(schemas.Client, "Terminate", 0, enc(t, &pgproto3.Terminate{}))
	s.End("client terminated")
	return s
}

func processAll(p *Processor, frames []schemas.Frame) Output {
	var out Output
	for _, f := range frames {
		p.Frame(f, &out)
	}
	return out
}

func TestPostgresSessionEndToEnd(t *testing.T) {
	p := newProcessor(t)
	s := pgSession(t, alice, t0)
	out := processAll(p, s.Frames)

	if len(out.Frames) != len(s.Frames) {
		t.Fatalf("%d frames out of %d", len(out.Frames), len(s.Frames))
	}
	for i, f := range out.Frames {
		if f.Seq != int64(i) || !bytes.Equal(f.Hash, s.Frames[i].Hash) {
			t.Fatalf("frame %d: seq %d, hash changed", i, f.Seq)
		}
		prev := schemas.ZeroHash
		if i > 0 {
			prev = out.Frames[i-1].Hash
		}
		if err := schemas.CheckLink(&f, prev); err != nil {
			t.Errorf("masked stream does not verify: %v", err)
		}
		// Every frame masking changed carries the processor's signature; no other does.
		switch {
		case len(f.Masks) > 0:
			if err := schemas.VerifyMasked(processorKey.Public().(ed25519.PublicKey), &f); err != nil {
				t.Errorf("seq %d (%s) masked: %v", f.Seq, f.Kind, err)
			}
		case f.ProcessorSig != nil:
			t.Errorf("seq %d (%s) not masked but carries a processor signature", f.Seq, f.Kind)
		}
		for _, secret := range []string{"bob@example.com", "$2b$10$hash", "n3w-s3cret"} {
			if bytes.Contains(f.Payload, []byte(secret)) {
				t.Errorf("seq %d (%s) leaks %q", f.Seq, f.Kind, secret)
			}
		}
	}
	if m := out.Frames[3].Masks; m[mask.Email] != 1 || m[mask.Column] != 1 {
		t.Errorf("DataRow masks %v", m)
	}

	if len(out.Commands) != 2 {
		t.Fatalf("commands %+v", out.Commands)
	}
	c := out.Commands[0]
	if c.Text != "SELECT id, email, password_hash FROM users WHERE email = '[masked:email]'" || c.Rows != 1 ||
		c.Subject != "alice" || c.Target != "app" || c.CommandSeq != 1 || c.Masks[mask.Email] != 1 {
		t.Errorf("command %+v", c)
	}
	if out.Commands[1].Text != "ALTER ROLE app PASSWORD '[masked:sql_password]'" {
		t.Errorf("command %q", out.Commands[1].Text)
	}

	if len(out.Sessions) != 2 {
		t.Fatalf("summaries %+v", out.Sessions)
	}
	first, last := out.Sessions[0], out.Sessions[1]
	if first.Status != schemas.StatusActive || first.Version != 1 || first.Subject != "alice" {
		t.Errorf("first summary %+v", first)
	}
	end := s.Frames[len(s.Frames)-1]
	if last.Status != schemas.StatusEnded || last.Version != 2 || last.Commands != 2 || last.Frames != int64(len(s.Frames)) ||
		last.EndReason != "client terminated" || last.SignatureOK == nil || !*last.SignatureOK || len(last.Integrity) != 0 ||
		last.LastSeq != end.Seq || !bytes.Equal(last.FinalHash, end.Hash) || last.BytesClient != end.End.BytesClient ||
		last.BytesServer != end.End.BytesServer || last.EndedAt == nil || !last.EndedAt.Equal(end.TS) {
		t.Errorf("final summary %+v", last)
	}

	var types []string
	for _, r := range out.Audit {
		types = append(types, r.Type)
	}
	if want := []string{audit.TypeSessionStart, audit.TypeCommand, audit.TypeCommand, audit.TypeSessionEnd}; !reflect.DeepEqual(types, want) {
		t.Errorf("audit %v", types)
	}
	rec := out.Audit[1]
	if rec.UserSubject != "alice" || rec.UserEmail != "alice@corp.example" || *rec.Rows != 1 || rec.Status != "ok" || rec.Outcome != "success" {
		t.Errorf("command audit %+v", rec)
	}
	b, _ := rec.Marshal()
	var flat map[string]any
	if err := json.Unmarshal(b, &flat); err != nil {
		t.Fatal(err)
	}
	for k, v := range flat {
		if _, nested := v.(map[string]any); nested {
			t.Errorf("audit field %s is nested", k)
		}
	}
	if p.Sessions() != 1 {
		t.Errorf("ended session's tip should be kept until swept, have %d", p.Sessions())
	}
}

// saveRestore moves every session's state through bytes into a new processor.
func saveRestore(t *testing.T, p *Processor, saved map[string][]byte) *Processor {
	t.Helper()
	return saveRestoreInto(t, p, saved, newProcessor)
}

// saveRestoreInto takes p's changed state into saved and restores all of saved
// into a processor from fresh.
func saveRestoreInto(t *testing.T, p *Processor, saved map[string][]byte, fresh func(testing.TB) *Processor) *Processor {
	t.Helper()
	changes, err := p.TakeDirty()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Value == nil {
			delete(saved, c.SessionID)
		} else {
			saved[c.SessionID] = c.Value
		}
	}
	q := fresh(t)
	for id, v := range saved {
		if err := q.Restore(id, v); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

func interleaved(t testing.TB, n int, seed uint64) []schemas.Frame {
	var all [][]schemas.Frame
	for i := range n {
		start := alice
		start.Subject = "agent-" + string(rune('a'+i%26))
		var s *sessiontest.Session
		switch i % 3 {
		case 0:
			s = pgSession(t, start, t0.Add(time.Duration(i)*time.Second))
		case 1:
			s = sshSession(start, t0.Add(time.Duration(i)*time.Second))
		default:
			s = pgExtended(t, start, t0.Add(time.Duration(i)*time.Second))
		}
		all = append(all, s.Frames)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	var out []schemas.Frame
	for len(all) > 0 {
		i := rng.IntN(len(all))
		out = append(out, all[i][0])
		if all[i] = all[i][1:]; len(all[i]) == 0 {
			all = append(all[:i], all[i+1:]...)
		}
	}
	return out
}

func sshSession(start schemas.SessionStart, t0 time.Time) *sessiontest.Session {
	start.Target = "box"
	s := sessiontest.Start(schemas.SSH, start, sessiontest.NewKey(2), t0)
	s.Add(schemas.Client, "ssh.channel.open", 0, ssh.Marshal(&struct{ T string }{"session"}))
	s.Add(schemas.Client, "ssh.request.pty-req", 0, ssh.Marshal(&struct {
		Term               string
		Cols, Rows, PW, PH uint32
		Modes              string
	}{"xterm", 80, 24, 0, 0, ""}))
	s.Add(schemas.Client, "ssh.request.shell", 0, nil)
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("$ "))
	for _, k := range []string{"su", "do -i", "\r"} {
		s.Add(schemas.Client, "ssh.channel.data", 0, []byte(k))
	}
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("[sudo] password for ci: "))
	for _, k := range []string{"h", "unter", "2", "\r"} {
		s.Add(schemas.Client, "ssh.channel.data", 0, []byte(k))
	}
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("\r\n# "))
	s.Add(schemas.Client, "ssh.channel.data", 0, []byte("cat /root/.aws/credentials\r"))
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\r\n# "))
	s.Add(schemas.Client, "ssh.channel.data", 0, []byte("exit\r"))
	s.Add(schemas.Server, "ssh.request.exit-status", 0, []byte{0, 0, 0, 0})
	s.Add(schemas.Server, "ssh.channel.close", 0, nil)
	s.End("client closed")
	return s
}

func pgExtended(t testing.TB, start schemas.SessionStart, t0 time.Time) *sessiontest.Session {
	s := sessiontest.Start(schemas.Postgres, start, sessiontest.NewKey(1), t0)
	s.Add(schemas.Client, "Parse", 0, enc(t, &pgproto3.Parse{Name: "s", Query: "INSERT INTO users (name, password) VALUES ($1, $2)"}))
	s.Add(schemas.Client, "Bind", 0, enc(t, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("carol"), []byte("pa55word!")}}))
	s.Add(schemas.Client, "Execute", 0, enc(t, &pgproto3.Execute{}))
	s.Add(schemas.Client, "Sync", 0, enc(t, &pgproto3.Sync{}))
	s.Add(schemas.Server, "ParseComplete", 0, enc(t, &pgproto3.ParseComplete{}))
	s.Add(schemas.Server, "BindComplete", 0, enc(t, &pgproto3.BindComplete{}))
	s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}))
	s.Add(schemas.Server, "ReadyForQuery", 0, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	s.End("client terminated")
	return s
}

// marshalOutput renders outputs canonically (JSON sorts map keys; Avro encodes maps
// in Go's random iteration order).
func marshalOutput(t *testing.T, o Output) string {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The runner's exactly-once guarantee rests on this: restoring saved state at any
// frame boundary gives exactly the outputs of an uninterrupted run.
func TestRestoreAtAnyPointGivesTheSameOutputs(t *testing.T) {
	frames := interleaved(t, 12, 1)
	want := processAll(newProcessor(t), frames)

	rng := rand.New(rand.NewPCG(7, 7))
	p := newProcessor(t)
	saved := map[string][]byte{}
	var got Output
	for _, f := range frames {
		if rng.IntN(3) == 0 {
			p = saveRestore(t, p, saved)
		}
		p.Frame(f, &got)
	}
	if marshalOutput(t, got) != marshalOutput(t, want) {
		t.Fatal("outputs differ after save/restore")
	}
	if len(want.Commands) == 0 || len(want.Sessions) < 24 {
		t.Fatalf("fixture too small: %d commands, %d summaries", len(want.Commands), len(want.Sessions))
	}
}

func TestSSHSessionSecretsDoNotLeak(t *testing.T) {
	p := newProcessor(t)
	s := sshSession(alice, t0)
	out := processAll(p, s.Frames)
	for _, f := range out.Frames {
		for _, secret := range []string{"hunter2", "unter", "AKIAIOSFODNN7EXAMPLE"} {
			if bytes.Contains(f.Payload, []byte(secret)) {
				t.Errorf("seq %d leaks %q: %q", f.Seq, secret, f.Payload)
			}
		}
	}
	var texts []string
	for _, c := range out.Commands {
		texts = append(texts, c.Kind+":"+c.Text)
	}
	want := []string{"shell:sudo -i", "shell:*******", "shell:cat /root/.aws/credentials", "shell:exit", "shell.session:interactive shell (pty xterm 80x24)"}
	if !reflect.DeepEqual(texts, want) {
		t.Errorf("commands %q", texts)
	}
	if m := out.Commands[1].Masks; m[mask.TypedSecret] == 0 {
		t.Errorf("password line masks %v", m)
	}
}

func TestIntegrityAlertsReachAuditAndSummary(t *testing.T) {
	p := newProcessor(t)
	s := pgSession(t, alice, t0)
	frames := append(append([]schemas.Frame{}, s.Frames[:3]...), s.Frames[5:]...) // seqs 3, 4 lost
	frames[2].Payload = append([]byte(nil), frames[2].Payload...)
	frames[2].Payload[len(frames[2].Payload)-1] ^= 1 // tampered
	out := processAll(p, frames)
	var alerts []string
	for _, r := range out.Audit {
		if r.Type == audit.TypeIntegrity {
			alerts = append(alerts, r.Alert)
			if r.Severity != "high" || r.UserSubject != "alice" {
				t.Errorf("alert record %+v", r)
			}
		}
	}
	if !reflect.DeepEqual(alerts, []string{"digest", "gap"}) {
		t.Errorf("alerts %v", alerts)
	}
	last := out.Sessions[len(out.Sessions)-1]
	if len(last.Integrity) != 2 || last.Status != schemas.StatusEnded {
		t.Errorf("summary %+v", last)
	}
	// Each alert made a summary go out at once.
	if len(out.Sessions) != 4 {
		t.Errorf("%d summaries", len(out.Sessions))
	}
}

func TestIdleSessionIsAbandonedAndCanResume(t *testing.T) {
	p := newProcessor(t)
	s := sessiontest.Start(schemas.Postgres, alice, sessiontest.NewKey(1), t0)
	s.Add(schemas.Client, "Query", 0, enc(t, &pgproto3.Query{String: "SELECT pg_sleep(7200)"}))
	var out Output
	for _, f := range s.Frames {
		p.Frame(f, &out)
	}
	out.Reset()
	p.Sweep(t0.Add(29*time.Minute), &out)
	if out.Len() != 0 {
		t.Fatalf("swept too early: %+v", out)
	}
	p.Sweep(t0.Add(31*time.Minute), &out)
	if len(out.Sessions) != 1 || out.Sessions[0].Status != schemas.StatusAbandoned || len(out.Commands) != 1 ||
		out.Commands[0].Status != "incomplete" || len(out.Audit) != 2 || out.Audit[1].Type != audit.TypeSessionAbandoned {
		t.Fatalf("abandon: %+v", out)
	}
	changes, _ := p.TakeDirty()
	if len(changes) != 1 || changes[0].Value == nil {
		t.Fatalf("abandoned state should be kept: %+v", changes)
	}
	out.Reset()
	s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}))
	p.Frame(s.Frames[len(s.Frames)-1], &out)
	if len(out.Sessions) != 1 || out.Sessions[0].Status != schemas.StatusActive || out.Audit[0].Type != audit.TypeSessionResumed {
		t.Fatalf("resume: %+v", out)
	}
	out.Reset()
	p.Sweep(t0.Add(26*time.Hour), &out) // abandoned again
	p.Sweep(t0.Add(52*time.Hour), &out) // and forgotten
	changes, _ = p.TakeDirty()
	if p.Sessions() != 0 || len(changes) != 1 || changes[0].Value != nil {
		t.Fatalf("not forgotten: %d sessions, %+v", p.Sessions(), changes)
	}
}

func TestDeniedSession(t *testing.T) {
	p := newProcessor(t)
	s := sessiontest.Denied(schemas.SSH, alice, "not in group ops", sessiontest.NewKey(1), t0)
	out := processAll(p, s.Frames)
	last := out.Sessions[len(out.Sessions)-1]
	if last.Status != schemas.StatusDenied || last.EndReason != "not in group ops" || last.EndedAt == nil || last.Subject != "alice" {
		t.Errorf("summary %+v", last)
	}
	if out.Audit[0].Type != audit.TypeSessionDenied || out.Audit[0].Outcome != "failure" || out.Audit[1].Type != audit.TypeSessionEnd {
		t.Errorf("audit %+v", out.Audit)
	}
}

func TestSummaryIntervalBoundsReemission(t *testing.T) {
	p := newProcessor(t)
	s := sessiontest.Start(schemas.Postgres, alice, sessiontest.NewKey(1), t0)
	s.Step = 10 * time.Second
	for range 30 { // five minutes of queries
		s.Add(schemas.Client, "Query", 0, enc(t, &pgproto3.Query{String: "SELECT 1"}))
		s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}))
		s.Add(schemas.Server, "ReadyForQuery", 0, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	}
	out := processAll(p, s.Frames)
	// One at start, then one a minute for 15 minutes of frames (90 frames × 10 s).
	if n := len(out.Sessions); n < 14 || n > 16 {
		t.Errorf("%d summaries", n)
	}
	for i := 1; i < len(out.Sessions); i++ {
		if out.Sessions[i].Version != out.Sessions[i-1].Version+1 {
			t.Fatal("versions do not increase by one")
		}
	}
}

// A statement longer than the gateway's fragment limit arrives in fragments. A
// processor restarted between them (its state saved and restored) stitches the
// same command, with the whole text and its masks, as one that ran through.
func TestFragmentedStatementSurvivesRestore(t *testing.T) {
	s := sessiontest.Start(schemas.Postgres, alice, sessiontest.NewKey(1), t0)
	text := "INSERT INTO notes (body, pw) VALUES ('" + strings.Repeat("x", 3000) + "', 'password=hunter2')"
	s.AddFragmented(schemas.Client, "Query", 0, enc(t, &pgproto3.Query{String: text}), 1024)
	s.Add(schemas.Server, "CommandComplete", 0, enc(t, &pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}))
	s.Add(schemas.Server, "ReadyForQuery", 0, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	s.Add(schemas.Client, "Terminate", 0, enc(t, &pgproto3.Terminate{}))
	s.End("client terminated")

	want := processAll(newProcessor(t), s.Frames)
	if len(want.Commands) == 0 || !strings.HasPrefix(want.Commands[0].Text, "INSERT INTO notes") || len(want.Commands[0].Text) < 3000 {
		t.Fatalf("uninterrupted run stitched %+v", want.Commands)
	}
	p := newProcessor(t)
	saved := map[string][]byte{}
	var got Output
	for _, f := range s.Frames {
		p = saveRestore(t, p, saved)
		p.Frame(f, &got)
	}
	if marshalOutput(t, got) != marshalOutput(t, want) {
		t.Errorf("commands after a restore between fragments:\n%.200q\nwant\n%.200q", got.Commands[0].Text, want.Commands[0].Text)
	}
}
