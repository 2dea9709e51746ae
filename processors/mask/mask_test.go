package mask

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/protocol"
)

func defaultMasker(t *testing.T) *Masker {
	t.Helper()
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTextDetectors(t *testing.T) {
	m := defaultMasker(t)
	cases := []struct {
		name, in, want string
		types          []string
	}{
		{"email in text", "contact alice.smith+ops@example.co.uk now", "contact [masked:email] now", []string{Email}},
		{"card with spaces, valid Luhn", "card 4111 1111 1111 1111 exp", "card [masked:card] exp", []string{Card}},
		{"card compact, valid Luhn", "pan=5500005555555559;", "pan=[masked:card];", []string{Card}},
		{"card invalid Luhn", "order 4111111111111112 shipped", "order 4111111111111112 shipped", nil},
		{"digits all the same", "id 0000000000000000", "id 0000000000000000", nil},
		{"SSN", "ssn: 078-05-1120.", "ssn: [masked:national_id].", []string{NationalID}},
		{"SSN never issued", "ref 666-12-3456 and 000-12-3456", "ref 666-12-3456 and 000-12-3456", nil},
		{"IBAN grouped", "pay DE89 3704 0044 0532 0130 00 today", "pay [masked:iban] today", []string{IBAN}},
		{"IBAN compact", "GB82WEST12345698765432", "[masked:iban]", []string{IBAN}},
		{"IBAN bad check digits", "DE89370400440532013001", "DE89370400440532013001", nil},
		{"international phone", "call +1 415 555 2671 now", "call [masked:phone] now", []string{Phone}},
		{"US phone", "tel (415) 555-2671", "tel [masked:phone]", []string{Phone}},
		{"JWT", "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl end", "token=[masked:jwt] end", []string{JWT}},
		{"AWS access key id", "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "export AWS_ACCESS_KEY_ID=[masked:cloud_key]", []string{CloudKey}},
		{"AWS secret key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "aws_secret_access_key = [masked:cloud_key]\n", []string{CloudKey}},
		{"GCP API key", "key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&x", "key=[masked:cloud_key]&x", []string{CloudKey}},
		{"Azure account key", "AccountKey=" + strings.Repeat("a", 86) + "==;EndpointSuffix", "AccountKey=[masked:cloud_key];EndpointSuffix", []string{CloudKey}},
		{"GitHub token", "gh auth ghp_" + strings.Repeat("A1", 18), "gh auth [masked:api_token]", []string{APIToken}},
		{"private key block", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
			"-----BEGIN RSA PRIVATE KEY-----[masked:private_key]-----END RSA PRIVATE KEY-----\n", []string{PrivateKey}},
		{"private key block cut short", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r", "-----BEGIN OPENSSH PRIVATE KEY-----[masked:private_key]", []string{PrivateKey}},
		{"ALTER ROLE password", "ALTER ROLE bob WITH PASSWORD 'hunter2';", "ALTER ROLE bob WITH PASSWORD '[masked:sql_password]';", []string{SQLPassword}},
		{"CREATE USER password with quote", "create user app encrypted password 'it''s a secret' login", "create user app encrypted password '[masked:sql_password]' login", []string{SQLPassword}},
		{"dollar-quoted password", "ALTER USER x PASSWORD $$p@ss$$", "ALTER USER x PASSWORD $$[masked:sql_password]$$", []string{SQLPassword}},
		{"postgres URL", "psql postgres://app:s3cr3t@db.internal:5432/app", "psql postgres://app:[masked:password]@db.internal:5432/app", []string{Password}},
		{"libpq conninfo", "host=db user=app password=s3cr3t dbname=app", "host=db user=app password=[masked:password] dbname=app", []string{Password}},
		{"quoted conninfo password", "Server=db;Password='a b c';Database=x", "Server=db;Password='[masked:password]';Database=x", []string{Password}},
		{"plain SQL untouched", "SELECT id, name FROM users WHERE created_at > '2024-01-15 10:00:00' LIMIT 10", "SELECT id, name FROM users WHERE created_at > '2024-01-15 10:00:00' LIMIT 10", nil},
		{"placeholder is not a password", "UPDATE users SET password = $1 WHERE id = $2", "UPDATE users SET password = $1 WHERE id = $2", nil},
		{"version numbers and small ids", "v1.2.3 build 12345 pid 4242", "v1.2.3 build 12345 pid 4242", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Counts{}
			got := m.Text("any", tc.in, c)
			if got != tc.want {
				t.Errorf("\n in: %q\ngot: %q\nwant %q", tc.in, got, tc.want)
			}
			if types := c.Sorted(); !reflect.DeepEqual(types, sortedOrNil(tc.types)) {
				t.Errorf("mask types %v, want %v", types, tc.types)
			}
		})
	}
}

func sortedOrNil(s []string) []string {
	if len(s) == 0 {
		return []string{}
	}
	c := Counts{}
	for _, x := range s {
		c[x]++
	}
	return c.Sorted()
}

func TestDetectorsCanBeSwitchedOffPerTarget(t *testing.T) {
	cfg, err := LoadConfig([]byte(`
defaults:
  regex: [{name: ticket, pattern: 'TCK-[0-9]{6}'}]
targets:
  crm:
    detectors: {email: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := "alice@example.com TCK-123456"
	if got := m.Text("crm", in, Counts{}); got != "alice@example.com [masked:regex:ticket]" {
		t.Errorf("crm: %q", got)
	}
	if got := m.Text("other", in, Counts{}); got != "[masked:email] [masked:regex:ticket]" {
		t.Errorf("other: %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, y := range []string{
		"defaults: {detectors: {emial: true}}",
		"defaults: {regex: [{name: x, pattern: '('}]}",
		"defaults: {params: some}",
		"defaults: {params: [0]}",
		"defaults: {colums: [x]}",
		"defaults: {tables: {users: []}}",
		"defaults: {tables: {a.b.c: [x]}}",
		"defaults: {tables: {'.users': [x]}}",
	} {
		cfg, err := LoadConfig([]byte(y))
		if err == nil {
			_, err = New(cfg)
		}
		if err == nil {
			t.Errorf("%s: accepted", y)
		}
	}
}

// pgConv is a Postgres conversation for tests: its rows have columns cols, and it
// has prepared stmts (by name).
type pgConv struct {
	cols  []string
	stmts map[string]string
}

// c returns the conversation, told what it knows the way the processors tell it: by
// the frames of the session.
func (p pgConv) c() *pgwire.Conversation {
	c := &pgwire.Conversation{}
	for name, text := range p.stmts {
		c.Stitch(pgFrame("Parse", schemas.Client, mustEncode(&pgproto3.Parse{Name: name, Query: text})), protocol.Limits{})
	}
	if p.cols != nil {
		c.Stitch(pgFrame("Query", schemas.Client, mustEncode(&pgproto3.Query{String: "SELECT"})), protocol.Limits{})
		rd := &pgproto3.RowDescription{}
		for _, col := range p.cols {
			rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(col)})
		}
		c.Stitch(pgFrame("RowDescription", schemas.Server, mustEncode(rd)), protocol.Limits{})
	}
	return c
}

func mustEncode(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func encode(t *testing.T, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pgFrame(kind string, dir schemas.Direction, payload []byte) *schemas.Frame {
	f := &schemas.Frame{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Seq: 5, TS: time.Unix(1700000000, 0),
		Direction: dir, Protocol: schemas.Postgres, Kind: kind, Payload: payload, Final: true}
	return f
}

// decodeBody checks the framing of a rewritten message and decodes it.
func decodeBody(t *testing.T, p []byte, m interface{ Decode([]byte) error }) {
	t.Helper()
	if len(p) < 5 || int(binary.BigEndian.Uint32(p[1:5])) != len(p)-1 {
		t.Fatalf("bad framing: % x", p)
	}
	if err := m.Decode(p[5:]); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresQueryAndDataRow(t *testing.T) {
	m := defaultMasker(t)
	q := pgFrame("Query", schemas.Client, encode(t, &pgproto3.Query{String: "ALTER ROLE app PASSWORD 'p4ss'; SELECT 'bob@example.com'"}))
	if c := m.Frame(q, "db", pgConv{}.c()); c[SQLPassword] != 1 || c[Email] != 1 {
		t.Fatalf("counts %v", c)
	}
	var qm pgproto3.Query
	decodeBody(t, q.Payload, &qm)
	if want := "ALTER ROLE app PASSWORD '[masked:sql_password]'; SELECT '[masked:email]'"; qm.String != want {
		t.Errorf("query %q", qm.String)
	}

	row := pgFrame("DataRow", schemas.Server, encode(t, &pgproto3.DataRow{Values: [][]byte{
		[]byte("42"), []byte("carol@example.org"), []byte("$2b$12$abcdefghijk"), nil, []byte("plain")}}))
	conv := pgConv{cols: []string{"id", "email", "password_hash", "deleted_at", "note"}}.c()
	c := m.Frame(row, "db", conv)
	if !reflect.DeepEqual(map[string]int64(c), map[string]int64{Email: 1, Column: 1}) {
		t.Errorf("counts %v", c)
	}
	var dr pgproto3.DataRow
	decodeBody(t, row.Payload, &dr)
	want := [][]byte{[]byte("42"), []byte("[masked:email]"), []byte("[masked:column]"), nil, []byte("plain")}
	if !reflect.DeepEqual(dr.Values, want) {
		t.Errorf("row %q", dr.Values)
	}
	if len(row.PayloadSalt) != 0 || row.Masks[Column] != 1 {
		t.Errorf("salt %x masks %v", row.PayloadSalt, row.Masks)
	}
}

func TestPostgresBindParameters(t *testing.T) {
	conv := pgConv{stmts: map[string]string{
		"ins": "INSERT INTO users (name, password, email) VALUES ($1, $2, $3)",
		"upd": `UPDATE accounts SET api_key = $1 WHERE id = $2`,
	}}.c()
	bind := func(stmt string, params ...string) *schemas.Frame {
		b := &pgproto3.Bind{PreparedStatement: stmt}
		for _, p := range params {
			b.Parameters = append(b.Parameters, []byte(p))
		}
		return pgFrame("Bind", schemas.Client, encode(t, b))
	}
	params := func(f *schemas.Frame) []string {
		var b pgproto3.Bind
		decodeBody(t, f.Payload, &b)
		var out []string
		for _, p := range b.Parameters {
			out = append(out, string(p))
		}
		return out
	}
	m := defaultMasker(t)
	f := bind("ins", "bob", "hunter2", "bob@example.com")
	m.Frame(f, "db", conv)
	if got := params(f); !reflect.DeepEqual(got, []string{"bob", "[masked:param]", "[masked:email]"}) {
		t.Errorf("insert params %q", got)
	}
	f = bind("upd", "k-123", "7")
	m.Frame(f, "db", conv)
	if got := params(f); !reflect.DeepEqual(got, []string{"[masked:param]", "7"}) {
		t.Errorf("update params %q", got)
	}

	cfg, _ := LoadConfig([]byte("targets: {pay: {params: [2]}, all: {params: all}}"))
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f = bind("", "a", "b", "c")
	m2.Frame(f, "pay", pgConv{}.c())
	if got := params(f); !reflect.DeepEqual(got, []string{"a", "[masked:param]", "c"}) {
		t.Errorf("position params %q", got)
	}
	f = bind("", "a", "b")
	m2.Frame(f, "all", pgConv{}.c())
	if got := params(f); !reflect.DeepEqual(got, []string{"[masked:param]", "[masked:param]"}) {
		t.Errorf("all params %q", got)
	}
}

func TestPostgresAuthAndErrors(t *testing.T) {
	m := defaultMasker(t)
	f := pgFrame("PasswordMessage", schemas.Client, encode(t, &pgproto3.PasswordMessage{Password: "eyJhbGciOi.token"}))
	m.Frame(f, "db", pgConv{}.c())
	var pm pgproto3.PasswordMessage
	decodeBody(t, f.Payload, &pm)
	if pm.Password != "[masked:auth]" {
		t.Errorf("password message %q", pm.Password)
	}
	e := pgFrame("ErrorResponse", schemas.Server, encode(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505",
		Message: "duplicate key value violates unique constraint", Detail: "Key (email)=(dan@example.com) already exists."}))
	m.Frame(e, "db", pgConv{}.c())
	var er pgproto3.ErrorResponse
	decodeBody(t, e.Payload, &er)
	if er.Detail != "Key (email)=([masked:email]) already exists." || er.Code != "23505" {
		t.Errorf("error response %+v", er)
	}
}

func TestPostgresUntouchedMessageKeepsSalt(t *testing.T) {
	m := defaultMasker(t)
	p := encode(t, &pgproto3.Query{String: "SELECT 1"})
	f := pgFrame("Query", schemas.Client, p)
	f.PayloadSalt = []byte("0123456789abcdef")
	if c := m.Frame(f, "db", pgConv{}.c()); c != nil {
		t.Fatalf("masked %v", c)
	}
	if !bytes.Equal(f.Payload, p) || len(f.PayloadSalt) == 0 || f.Masks != nil {
		t.Error("frame changed")
	}
}

func TestPostgresFragmentedDataRow(t *testing.T) {
	big := strings.Repeat("x", 3000)
	msg := encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("secret-" + big), []byte("eve@example.com"), []byte(big)}})
	conv := pgConv{cols: []string{"id", "api_key", "contact", "blob"}}.c()
	m := defaultMasker(t)
	// Cut inside the masked value, inside a length field, and inside the email.
	emailAt := bytes.Index(msg, []byte("eve@"))
	cuts := []int{0, 20, emailAt + 5, len(msg) - len(big) - 2, len(msg)}
	var out []byte
	for i := 0; i+1 < len(cuts); i++ {
		f := pgFrame("DataRow", schemas.Server, append([]byte(nil), msg[cuts[i]:cuts[i+1]]...))
		f.Fragment, f.Final = int32(i), i+2 == len(cuts)
		m.Frame(f, "db", conv)
		if len(f.Payload) != cuts[i+1]-cuts[i] {
			t.Fatalf("fragment %d changed length", i)
		}
		out = append(out, f.Payload...)
	}
	var dr pgproto3.DataRow
	decodeBody(t, out, &dr)
	if string(dr.Values[0]) != "1" || string(dr.Values[1]) != strings.Repeat("*", len("secret-")+len(big)) || string(dr.Values[3]) != big {
		t.Errorf("values %.40q", dr.Values)
	}
	// The email straddles a fragment boundary: the detectors see each part alone.
	if string(dr.Values[2]) != "eve@example.com" {
		t.Logf("email across fragments: %q", dr.Values[2])
	}
	if conv.Walk != nil {
		t.Error("walk state kept after the final fragment")
	}
}

func TestPostgresFragmentedQueryMasksWithinFragments(t *testing.T) {
	sql := "INSERT INTO t VALUES ('" + strings.Repeat("a", 2000) + "', 'frank@example.com')"
	msg := encode(t, &pgproto3.Query{String: sql})
	m := defaultMasker(t)
	half := len(msg) / 2
	var out []byte
	for i, part := range [][]byte{msg[:half], msg[half:]} {
		f := pgFrame("Query", schemas.Client, append([]byte(nil), part...))
		f.Fragment, f.Final = int32(i), i == 1
		m.Frame(f, "db", pgConv{}.c())
		out = append(out, f.Payload...)
	}
	var q pgproto3.Query
	decodeBody(t, out, &q)
	if !strings.HasSuffix(q.String, "'*****************')") {
		t.Errorf("query tail %q", q.String[len(q.String)-40:])
	}
}

func TestSSHPasswordPromptAndExec(t *testing.T) {
	m := defaultMasker(t)
	conv := sshConv()
	data := func(dir schemas.Direction, s string) *schemas.Frame {
		return &schemas.Frame{Protocol: schemas.SSH, Kind: "ssh.channel.data", Direction: dir, Channel: 1, Payload: []byte(s), Final: true}
	}
	m.Frame(data(schemas.Server, "bob@box:~$ "), "box", conv)
	in := data(schemas.Client, "sudo -i\r")
	if m.Frame(in, "box", conv) != nil {
		t.Errorf("ordinary command masked: %q", in.Payload)
	}
	m.Frame(data(schemas.Server, "\r\n\x1b[1m[sudo] password for bob: \x1b[0m"), "box", conv)
	for _, k := range []string{"hun", "ter2", "\r"} {
		f := data(schemas.Client, k)
		m.Frame(f, "box", conv)
		if strings.Trim(string(f.Payload), "*\r") != "" {
			t.Errorf("keystrokes at a password prompt leaked: %q", f.Payload)
		}
	}
	after := data(schemas.Client, "id\r")
	m.Frame(after, "box", conv)
	if string(after.Payload) != "id\r" {
		t.Errorf("secret input mode outlived the line: %q", after.Payload)
	}
	out := data(schemas.Server, "export TOKEN=ghp_"+strings.Repeat("Z9", 18)+"\r\n")
	n := len(out.Payload)
	m.Frame(out, "box", conv)
	if len(out.Payload) != n || bytes.Contains(out.Payload, []byte("ghp_")) {
		t.Errorf("output %q", out.Payload)
	}

	exec := &schemas.Frame{Protocol: schemas.SSH, Kind: "ssh.request.exec", Direction: schemas.Client,
		Payload: ssh.Marshal(&struct{ Command string }{"pg_dump postgres://ops:Sup3r@db/app"}), Final: true}
	m.Frame(exec, "box", conv)
	var req struct{ Command string }
	if err := ssh.Unmarshal(exec.Payload, &req); err != nil {
		t.Fatal(err)
	}
	if req.Command != "pg_dump postgres://ops:[masked:password]@db/app" {
		t.Errorf("exec %q", req.Command)
	}
	env := &schemas.Frame{Protocol: schemas.SSH, Kind: "ssh.request.env", Direction: schemas.Client,
		Payload: ssh.Marshal(&struct{ Name, Value string }{"DB_PASSWORD", "x"}), Final: true}
	m.Frame(env, "box", conv)
	var ev struct{ Name, Value string }
	if err := ssh.Unmarshal(env.Payload, &ev); err != nil || ev.Value != "[masked:env_secret]" || ev.Name != "DB_PASSWORD" {
		t.Errorf("env %+v %v", ev, err)
	}
}

func TestMaskedFrameStillVerifies(t *testing.T) {
	m := defaultMasker(t)
	f := pgFrame("Query", schemas.Client, encode(t, &pgproto3.Query{String: "SELECT 'gina@example.com'"}))
	f.GatewayID, f.Seq = "gw-1", 0
	if err := schemas.Seal(f, schemas.ZeroHash); err != nil {
		t.Fatal(err)
	}
	hash := append([]byte(nil), f.Hash...)
	if m.Frame(f, "db", pgConv{}.c()) == nil {
		t.Fatal("nothing masked")
	}
	if err := schemas.CheckLink(f, schemas.ZeroHash); err != nil {
		t.Errorf("masked frame does not verify: %v", err)
	}
	if !bytes.Equal(f.Hash, hash) {
		t.Error("hash changed")
	}
	// Round trip through the Avro codec, as the processor does.
	b, err := schemas.FrameCodec().Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := schemas.FrameCodec().Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.CheckLink(&g, schemas.ZeroHash); err != nil {
		t.Errorf("decoded masked frame does not verify: %v", err)
	}
}

func TestLifecycleFramesAreNeverMasked(t *testing.T) {
	m := defaultMasker(t)
	f := &schemas.Frame{Protocol: schemas.Postgres, Kind: schemas.KindSessionStart, Payload: []byte(`{"start":{"email":"h@example.com"}}`), Final: true}
	if m.Frame(f, "db", nil) != nil || !bytes.Contains(f.Payload, []byte("h@example.com")) {
		t.Error("lifecycle frame masked")
	}
}

// Declared tables resolve as PostgreSQL resolves names with the default
// search_path: unqualified means public, in any case; a target adds to the
// defaults and overrides a table they declare.
func TestTableColumns(t *testing.T) {
	cfg, err := LoadConfig([]byte(`
defaults:
  tables:
    Users: [ID, Email, Password]
    billing.cards: [id, number]
targets:
  db:
    tables:
      public.users: [id, password]
      audit: [at, who]
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Rules("other").(protocol.TableRules); !ok {
		t.Fatal("rules do not declare tables")
	}
	for _, tc := range []struct {
		target, schema, table string
		want                  []string
	}{
		{"other", "", "users", []string{"id", "email", "password"}},
		{"other", "PUBLIC", "USERS", []string{"id", "email", "password"}},
		{"other", "billing", "cards", []string{"id", "number"}},
		{"other", "", "cards", nil},
		{"other", "app", "users", nil},
		{"db", "", "users", []string{"id", "password"}},
		{"db", "", "audit", []string{"at", "who"}},
		{"db", "billing", "cards", []string{"id", "number"}},
	} {
		tr := m.Rules(tc.target).(protocol.TableRules)
		got, ok := tr.TableColumns(tc.schema, tc.table)
		if !reflect.DeepEqual(got, tc.want) || ok != (tc.want != nil) {
			t.Errorf("%s %s.%s: %v %v", tc.target, tc.schema, tc.table, got, ok)
		}
	}
}

// Column answers are remembered up to a bound; past it names are still matched,
// and the answers never depend on what was asked before.
func TestColumnRulesPastTheRememberedNames(t *testing.T) {
	m, err := New(Config{Targets: map[string]Rules{"app": {Columns: []string{"*_pin", "iban"}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := m.Rules("app")
	for i := range maxColumnSeen + 100 {
		if name := fmt.Sprintf("col_%d", i); r.Column(name) {
			t.Fatalf("%s masked", name)
		}
	}
	for range 2 {
		for name, want := range map[string]bool{"card_pin": true, "IBAN": true, "Password": true, "aid": false, "abalance": false} {
			if got := r.Column(name); got != want {
				t.Errorf("Column(%q) = %v, want %v", name, got, want)
			}
		}
	}
}
