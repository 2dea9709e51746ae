package pipeline

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// The gateway that recorded processors/testdata.
const recordedGatewayKey = "cfffac3319fae4673bd159afa6c3bac2ebf14f9fe3666634581587f089adc07f"

func processRecorded(t *testing.T, file string) ([]schemas.Frame, Output) {
	t.Helper()
	frames, err := sessiontest.Load("../testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := integrity.ParseKeys([]string{recordedGatewayKey})
	if err != nil {
		t.Fatal(err)
	}
	// The recorded sessions write their users table by position: its columns are
	// declared, as a deployment would.
	m, _ := mask.New(mask.Config{Defaults: mask.Rules{Tables: map[string][]string{"users": {"id", "email", "password_hash"}}}})
	p, err := New(Config{Masker: m, TrustedKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return frames, processAll(p, frames)
}

type cmdView struct {
	Seq     int64
	Kind    string
	Text    string
	Params  []string
	Status  string
	Rows    int64
	Error   string
	Exit    int32
	Channel int64
}

func view(cs []schemas.Command) []cmdView {
	var out []cmdView
	for _, c := range cs {
		v := cmdView{c.CommandSeq, c.Kind, c.Text, c.Params, c.Status, c.Rows, c.Error, -1, c.Channel}
		if c.ExitStatus != nil {
			v.Exit = *c.ExitStatus
		}
		out = append(out, v)
	}
	return out
}

// checkStream verifies every output frame chains and no secret survives.
func checkStream(t *testing.T, in []schemas.Frame, out Output, secrets ...string) {
	t.Helper()
	if len(out.Frames) != len(in) {
		t.Fatalf("%d frames out of %d", len(out.Frames), len(in))
	}
	prev := map[string][]byte{}
	for _, f := range out.Frames {
		p, ok := prev[f.SessionID]
		if !ok {
			p = schemas.ZeroHash
		}
		if err := schemas.CheckLink(&f, p); err != nil {
			t.Errorf("masked stream does not verify: %v", err)
		}
		prev[f.SessionID] = f.Hash
		for _, s := range secrets {
			if bytes.Contains(f.Payload, []byte(s)) {
				t.Errorf("seq %d %s leaks %q", f.Seq, f.Kind, s)
			}
		}
	}
	for _, c := range out.Commands {
		for _, s := range secrets {
			if bytes.Contains([]byte(c.Text+c.Error+string(bytes.Join(toBytes(c.Params), nil))), []byte(s)) {
				t.Errorf("command %d leaks %q", c.CommandSeq, s)
			}
		}
	}
	for _, s := range out.Sessions {
		if len(s.Integrity) != 0 {
			t.Errorf("session %s integrity %v", s.SessionID, s.Integrity)
		}
	}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestRecordedPostgresSession(t *testing.T) {
	in, out := processRecorded(t, "postgres-session.ndjson")
	// Not in the list: the hashes in the INSERT's literals. The INSERT names no columns,
	// so its values cannot be tied to password_hash (docs/processors.md).
	checkStream(t, in, out, "real.user@example.com", "other@example.net", "pbkdf2$fixture-new-hash", "fixture-pw-123", "copy@example.com")
	want := []cmdView{
		{18, "query", "CREATE TEMP TABLE users (id int, email text, password_hash text)", nil, "ok", 0, "", -1, 0},
		{21, "query", "INSERT INTO users VALUES (1, '[masked:email]', '[masked:column]'), (2, '[masked:email]', '[masked:column]')", nil, "ok", 2, "", -1, 0},
		{32, "prepared", "SELECT id, email, password_hash FROM users WHERE id > $1 ORDER BY id", []string{`\x00000000`}, "ok", 2, "", -1, 0},
		{48, "prepared", "UPDATE users SET password_hash = $1 WHERE email = $2", []string{"[masked:param]", "[masked:email]"}, "ok", 1, "", -1, 0},
		{54, "query", "SELECT * FROM no_such_table", nil, "error", 0, `ERROR 42P01: relation "no_such_table" does not exist`, -1, 0},
		{57, "query", "SELECT 1; SELECT count(*) FROM users; ALTER ROLE fixture_nobody PASSWORD '[masked:sql_password]'", nil, "error", 2,
			`ERROR 42704: role "fixture_nobody" does not exist`, -1, 0},
		{73, "copy", `copy "users" ( "id", "email", "password_hash" ) from stdin binary;`, nil, "ok", 1, "", -1, 0},
	}
	if got := view(out.Commands); !reflect.DeepEqual(got, want) {
		t.Errorf("commands\n got %+v\nwant %+v", got, want)
	}
	// DataRows: the email by detector, the hash by the password_hash column rule.
	var dr pgproto3.DataRow
	if err := dr.Decode(out.Frames[35].Payload[5:]); err != nil {
		t.Fatal(err)
	}
	if got := []string{string(dr.Values[1]), string(dr.Values[2])}; !reflect.DeepEqual(got, []string{"[masked:email]", "[masked:column]"}) {
		t.Errorf("DataRow %q", got)
	}
	// The binary COPY row keeps its field lengths; password_hash is masked by its
	// column rule (COPY names it), the email by the detector.
	if cd := out.Frames[74]; len(cd.Payload) != len(in[74].Payload) || cd.Masks[mask.Email] != 1 || cd.Masks[mask.Column] != 1 ||
		bytes.Contains(cd.Payload, []byte("pbkdf2$")) {
		t.Errorf("CopyData %q masks %v", cd.Payload, cd.Masks)
	}
	last := out.Sessions[len(out.Sessions)-1]
	if last.Status != schemas.StatusEnded || last.EndReason != "client terminated" || *last.SignatureOK != true ||
		last.Commands != 7 || last.Frames != int64(len(in)) || last.Subject != "ci-fixture" || last.Target != "app" {
		t.Errorf("summary %+v", last)
	}
}

func TestRecordedSSHSession(t *testing.T) {
	in, out := processRecorded(t, "ssh-session.ndjson")
	checkStream(t, in, out, "ghp_F1F1F1F1")
	want := []cmdView{
		{3, "exec", "echo hello; exit 3", nil, "error", 0, "exit status 3", 3, 0},
		{18, "shell", "echo fixture-shell", []string{`"echo fixture-shelx\x7fl\r"`}, "ok", 0, "", -1, 1},
		{28, "shell", "ls /nonexistent-dir", nil, "ok", 0, "", -1, 1},
		// The token arrived in one keystroke frame, masked there, same length.
		{31, "shell", "export API_TOKEN=" + strings.Repeat("*", 40), nil, "ok", 0, "", -1, 1},
		{33, "shell", "exit 0", nil, "ok", 0, "", -1, 1},
		{14, "shell.session", "interactive shell (pty xterm 80x24)", nil, "ok", 0, "", 0, 1},
	}
	if got := view(out.Commands); !reflect.DeepEqual(got, want) {
		t.Errorf("commands\n got %+v\nwant %+v", got, want)
	}
	byID := map[string]schemas.Session{}
	for _, s := range out.Sessions {
		byID[s.SessionID] = s
	}
	if len(byID) != 2 {
		t.Fatalf("%d sessions", len(byID))
	}
	for _, s := range byID {
		switch s.Status {
		case schemas.StatusDenied:
			if s.EndReason == "" || s.EndedAt == nil || !*s.SignatureOK {
				t.Errorf("denied summary %+v", s)
			}
		case schemas.StatusEnded:
			if s.Commands != 6 || !*s.SignatureOK || s.EndReason != "agent disconnected" {
				t.Errorf("summary %+v", s)
			}
		default:
			t.Errorf("summary %+v", s)
		}
	}
}
