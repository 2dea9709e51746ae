package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/ocsf"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// Secrets planted in the raw input; none may appear in any output topic.
var planted = []string{
	"planted-pw-7Hq2x",             // SQL password
	"zed.planted@example.org",      // email in a query and a DataRow
	"4929123456781236",             // card number (valid Luhn)
	"AKIAPLANTED7EXAMPL12",         // AWS key id in terminal output
	"hunter2-planted",              // typed at a password prompt
	"ghp_PLANTEDx9",                // the part of a token in the frame before the one completing it (held back)
	"planted-column-secret-value1", // DataRow value of a password column
	"planted-param-secret-value2",  // Bind parameter of a password column
}

func encPG(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// fixtureSessions records n sessions of both protocols with planted secrets, each
// a few dozen frames.
func fixtureSessions(n int, t0 time.Time) []*sessiontest.Session {
	var out []*sessiontest.Session
	for i := range n {
		start := schemas.SessionStart{Issuer: "https://idp.test", Subject: fmt.Sprintf("agent-%03d", i), Groups: []string{"ops"},
			Target: "app", ClientAddr: "10.1.0.1:40000"}
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		switch i % 4 {
		case 0, 1:
			out = append(out, pgFixture(start, at, i))
		case 2:
			start.Target = "box"
			out = append(out, sshFixture(start, at, i))
		default:
			out = append(out, sessiontest.Denied(schemas.Postgres, start, "not in group dba", sessiontest.NewKey(3), at))
		}
	}
	return out
}

func pgFixture(start schemas.SessionStart, t0 time.Time, i int) *sessiontest.Session {
	s := sessiontest.Start(schemas.Postgres, start, sessiontest.NewKey(3), t0)
	q := func(sql string, rows ...[]string) {
		s.Add(schemas.Client, "Query", 0, encPG(&pgproto3.Query{String: sql}))
		if len(rows) > 0 {
			rd := &pgproto3.RowDescription{}
			for _, n := range []string{"id", "email", "password"} {
				rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(n), DataTypeOID: 25, DataTypeSize: -1})
			}
			s.Add(schemas.Server, "RowDescription", 0, encPG(rd))
			for _, r := range rows {
				dr := &pgproto3.DataRow{}
				for _, v := range r {
					dr.Values = append(dr.Values, []byte(v))
				}
				s.Add(schemas.Server, "DataRow", 0, encPG(dr))
			}
		}
		s.Add(schemas.Server, "CommandComplete", 0, encPG(&pgproto3.CommandComplete{CommandTag: []byte(fmt.Sprintf("SELECT %d", len(rows)))}))
		s.Add(schemas.Server, "ReadyForQuery", 0, encPG(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	}
	q(fmt.Sprintf("SELECT %d", i))
	q("SELECT id, email, password FROM users WHERE email = 'zed.planted@example.org'",
		[]string{"1", "zed.planted@example.org", "planted-column-secret-value1"},
		[]string{"2", "card 4929123456781236", "x"})
	q("ALTER ROLE app PASSWORD 'planted-pw-7Hq2x'")
	s.Add(schemas.Client, "Parse", 0, encPG(&pgproto3.Parse{Name: "ins", Query: "INSERT INTO users (name, password) VALUES ($1, $2)"}))
	s.Add(schemas.Client, "Bind", 0, encPG(&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("zed"), []byte("planted-param-secret-value2")}}))
	s.Add(schemas.Client, "Execute", 0, encPG(&pgproto3.Execute{}))
	s.Add(schemas.Client, "Sync", 0, encPG(&pgproto3.Sync{}))
	s.Add(schemas.Server, "ParseComplete", 0, encPG(&pgproto3.ParseComplete{}))
	s.Add(schemas.Server, "BindComplete", 0, encPG(&pgproto3.BindComplete{}))
	s.Add(schemas.Server, "CommandComplete", 0, encPG(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}))
	s.Add(schemas.Server, "ReadyForQuery", 0, encPG(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	for k := range 3 + i%5 {
		q(fmt.Sprintf("SELECT now() -- %d", k))
	}
	s.Add(schemas.Client, "Terminate", 0, encPG(&pgproto3.Terminate{}))
	s.End("client terminated")
	return s
}

// fragmentedFixture is a Postgres session whose statements arrive in fragments
// (as the gateway records a statement over its fragment limit), with bytes that
// are not UTF-8: a processor killed between fragments, or while the command is
// open, must commit what an uninterrupted one does.
func fragmentedFixture(i int, t0 time.Time) *sessiontest.Session {
	start := schemas.SessionStart{Issuer: "https://idp.test", Subject: fmt.Sprintf("bulk-%02d", i), Groups: []string{"ops"},
		Target: "app", ClientAddr: "10.1.0.2:40000"}
	s := sessiontest.Start(schemas.Postgres, start, sessiontest.NewKey(3), t0.Add(time.Duration(i)*7*time.Millisecond))
	for k := range 3 {
		sql := fmt.Sprintf("INSERT INTO notes (body) VALUES ('caf\xe9 %d %s')", k, strings.Repeat("lorem ipsum ", 150+i))
		s.AddFragmented(schemas.Client, "Query", 0, encPG(&pgproto3.Query{String: sql}), 400)
		s.Add(schemas.Server, "CommandComplete", 0, encPG(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}))
		s.Add(schemas.Server, "ReadyForQuery", 0, encPG(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	}
	s.Add(schemas.Client, "Terminate", 0, encPG(&pgproto3.Terminate{}))
	s.End("client terminated")
	return s
}

func sshFixture(start schemas.SessionStart, t0 time.Time, i int) *sessiontest.Session {
	s := sessiontest.Start(schemas.SSH, start, sessiontest.NewKey(3), t0)
	s.Add(schemas.Client, "ssh.channel.open", 0, ssh.Marshal(&struct{ T string }{"session"}))
	s.Add(schemas.Client, "ssh.request.exec", 0, ssh.Marshal(&struct{ C string }{fmt.Sprintf("uptime # %d", i)}))
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("up 3 days\n"))
	s.Add(schemas.Server, "ssh.request.exit-status", 0, []byte{0, 0, 0, 0})
	s.Add(schemas.Server, "ssh.channel.close", 0, nil)
	s.Add(schemas.Client, "ssh.channel.open", 1, ssh.Marshal(&struct{ T string }{"session"}))
	s.Add(schemas.Client, "ssh.request.pty-req", 1, ssh.Marshal(&struct {
		Term               string
		Cols, Rows, PW, PH uint32
		Modes              string
	}{"xterm", 80, 24, 0, 0, ""}))
	s.Add(schemas.Client, "ssh.request.shell", 1, nil)
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("$ "))
	for _, k := range []string{"s", "udo ", "-i\r"} {
		s.Add(schemas.Client, "ssh.channel.data", 1, []byte(k))
		s.Add(schemas.Server, "ssh.channel.data", 1, []byte(strings.TrimSuffix(k, "\r")))
	}
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("\r\n[sudo] password for ci: "))
	for _, k := range []string{"hunter2", "-planted", "\r"} {
		s.Add(schemas.Client, "ssh.channel.data", 1, []byte(k))
	}
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("\r\n# "))
	s.Add(schemas.Client, "ssh.channel.data", 1, []byte("cat ~/.aws/credentials\r"))
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("cat ~/.aws/credentials\r\naws_access_key_id=AKIAPLANTED7EXAMPL12\r\n# "))
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("export GITHUB_TOKEN=ghp_PLANTEDx9"))
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("Q7r8s9t0u1v2w3x4y5z6A7B8C9D\r\n# "))
	s.Add(schemas.Client, "ssh.channel.data", 1, []byte("exit\r"))
	s.Add(schemas.Server, "ssh.request.exit-status", 1, []byte{0, 0, 0, 0})
	s.Add(schemas.Server, "ssh.channel.close", 1, nil)
	s.End("client closed")
	return s
}

// interleave merges sessions' frames into one stream, each session in order.
func interleave(ss []*sessiontest.Session, seed uint64) []schemas.Frame {
	queues := make([][]schemas.Frame, len(ss))
	for i, s := range ss {
		queues[i] = s.Frames
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var out []schemas.Frame
	for len(queues) > 0 {
		i := rng.IntN(len(queues))
		out = append(out, queues[i][0])
		if queues[i] = queues[i][1:]; len(queues[i]) == 0 {
			queues = append(queues[:i], queues[i+1:]...)
		}
	}
	return out
}

func produceFrames(t testing.TB, cl *kgo.Client, topic string, frames []schemas.Frame) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(frames))
	for i := range frames {
		v, err := schemas.FrameCodec().Encode(&frames[i])
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(frames[i].SessionID), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readCommitted reads a topic from the start to its last stable offset, read_committed.
func readCommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			end[o.Partition] = o.Offset
			consume[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(end) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(end) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			stop, ok := end[r.Partition]
			if !ok || r.Offset >= stop {
				return
			}
			if r.Offset >= stop-1 {
				delete(end, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

// outputs is what a processor run produced, keyed for comparison.
type outputs struct {
	frames   map[string]schemas.Frame   // session/seq
	commands map[string]schemas.Command // session/command_seq
	sessions map[string]schemas.Session // session/version
	final    map[string]schemas.Session // session → highest version
	audit    map[string]string          // id → canonical JSON
	ocsf     map[string]string          // metadata.uid (the audit id) → JSON
	raw      [][]byte                   // every record's key and value, to look for secrets
	dups     []string
}

func collect(t *testing.T, brokers []string, topics Topics) *outputs {
	t.Helper()
	o := &outputs{frames: map[string]schemas.Frame{}, commands: map[string]schemas.Command{},
		sessions: map[string]schemas.Session{}, final: map[string]schemas.Session{}, audit: map[string]string{},
		ocsf: map[string]string{}}
	add := func(key string, exists bool) {
		if exists {
			o.dups = append(o.dups, key)
		}
	}
	for _, r := range readCommitted(t, brokers, topics.Frames) {
		o.raw = append(o.raw, r.Key, r.Value)
		f, err := schemas.FrameCodec().Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("frame %s/%d", f.SessionID, f.Seq)
		_, ok := o.frames[k]
		add(k, ok)
		o.frames[k] = f
	}
	for _, r := range readCommitted(t, brokers, topics.Commands) {
		o.raw = append(o.raw, r.Key, r.Value)
		c, err := schemas.CommandCodec().Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("command %s/%d", c.SessionID, c.CommandSeq)
		_, ok := o.commands[k]
		add(k, ok)
		o.commands[k] = c
	}
	for _, r := range readCommitted(t, brokers, topics.Sessions) {
		o.raw = append(o.raw, r.Key, r.Value)
		s, err := schemas.SessionCodec().Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("session %s/%d", s.SessionID, s.Version)
		_, ok := o.sessions[k]
		add(k, ok)
		o.sessions[k] = s
		if s.Version > o.final[s.SessionID].Version {
			o.final[s.SessionID] = s
		}
	}
	for _, r := range readCommitted(t, brokers, topics.Audit) {
		o.raw = append(o.raw, r.Key, r.Value)
		var a audit.Record
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatal(err)
		}
		_, ok := o.audit[a.ID]
		add("audit "+a.ID, ok)
		o.audit[a.ID] = string(r.Value)
	}
	if topics.AuditOCSF == "" {
		return o
	}
	for _, r := range readCommitted(t, brokers, topics.AuditOCSF) {
		o.raw = append(o.raw, r.Key, r.Value)
		var e ocsf.Event
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		_, ok := o.ocsf[e.Metadata.UID]
		add("ocsf "+e.Metadata.UID, ok)
		o.ocsf[e.Metadata.UID] = string(r.Value)
	}
	// Written in the same transactions: one event per audit record, no more.
	for id := range o.audit {
		if _, ok := o.ocsf[id]; !ok {
			o.dups = append(o.dups, "no OCSF event for audit record "+id)
		}
	}
	for id := range o.ocsf {
		if _, ok := o.audit[id]; !ok {
			o.dups = append(o.dups, "OCSF event without audit record "+id)
		}
	}
	return o
}

// canon renders a value with sorted map keys.
func canon(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// diff describes how b differs from a (empty when equal).
func diff(a, b *outputs) []string {
	var out []string
	cmp := func(kind string, ka, kb map[string]string) {
		for k, va := range ka {
			vb, ok := kb[k]
			switch {
			case !ok:
				out = append(out, kind+" missing: "+k)
			case va != vb:
				out = append(out, kind+" differs: "+k)
			}
		}
		for k := range kb {
			if _, ok := ka[k]; !ok {
				out = append(out, kind+" extra: "+k)
			}
		}
	}
	cmp("frame", canonMap(a.frames), canonMap(b.frames))
	cmp("command", canonMap(a.commands), canonMap(b.commands))
	cmp("summary", canonMap(a.sessions), canonMap(b.sessions))
	cmp("audit", a.audit, b.audit)
	cmp("ocsf", a.ocsf, b.ocsf)
	sort.Strings(out)
	return out
}

func canonMap[V any](m map[string]V) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = canon(v)
	}
	return out
}

// leaks lists planted secrets found in any output record.
func (o *outputs) leaks() []string {
	var out []string
	for _, s := range planted {
		for _, b := range o.raw {
			if bytes.Contains(b, []byte(s)) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// waitCaughtUp waits until the group has committed the raw topic's end offsets.
func waitCaughtUp(t *testing.T, brokers []string, group, raw string, timeout time.Duration, alive func() error) {
	t.Helper()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, raw)
		committed, err2 := adm.FetchOffsets(ctx, group)
		cancel()
		if err1 == nil && err2 == nil {
			done := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(raw, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
			if done {
				return
			}
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("processor stopped: %v", err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not catch up with %s within %s", group, raw, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkSummaries verifies the final summaries against the recorded sessions.
func checkSummaries(t *testing.T, o *outputs, ss []*sessiontest.Session) {
	t.Helper()
	if len(o.final) != len(ss) {
		t.Errorf("%d sessions summarised, %d recorded", len(o.final), len(ss))
	}
	for _, s := range ss {
		sum, ok := o.final[s.ID]
		if !ok {
			t.Errorf("session %s: no summary", s.ID)
			continue
		}
		end := s.Frames[len(s.Frames)-1]
		wantStatus := schemas.StatusEnded
		if s.Frames[0].Kind == schemas.KindSessionDenied {
			wantStatus = schemas.StatusDenied
		}
		if sum.Status != wantStatus || sum.Frames != int64(len(s.Frames)) || sum.LastSeq != end.Seq ||
			!bytes.Equal(sum.FinalHash, end.Hash) || sum.SignatureOK == nil || !*sum.SignatureOK || len(sum.Integrity) != 0 ||
			sum.BytesClient != end.End.BytesClient || sum.BytesServer != end.End.BytesServer || sum.Subject != s.Frames[0].Start.Subject {
			t.Errorf("session %s: summary %+v", s.ID, sum)
		}
	}
	// Every frame went through, in a stream that still verifies.
	for _, s := range ss {
		prev := schemas.ZeroHash
		for _, rf := range s.Frames {
			f, ok := o.frames[fmt.Sprintf("frame %s/%d", s.ID, rf.Seq)]
			if !ok {
				t.Errorf("session %s seq %d missing from the frames topic", s.ID, rf.Seq)
				break
			}
			if err := schemas.CheckLink(&f, prev); err != nil {
				t.Errorf("session %s: %v", s.ID, err)
				break
			}
			if len(f.Masks) > 0 && (f.ProcessorSig == nil || schemas.VerifyMasked(f.ProcessorSig.Key, &f) != nil) {
				t.Errorf("session %s seq %d: masked frame without a valid processor signature", s.ID, f.Seq)
			}
			prev = f.Hash
		}
	}
}
