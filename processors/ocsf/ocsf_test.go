package ocsf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sessionOf(p schemas.Protocol, target string) *schemas.Session {
	return &schemas.Session{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Protocol: p, Target: target,
		GatewayID: "gw-1", Issuer: "https://idp.example.com", Subject: "ci-orders", Email: "ci@example.com",
		Name: "CI Orders", Groups: []string{"dba", "ops"}, TokenID: "jti-1", ClientAddr: "10.0.0.5:51000",
		StartedAt: t0, Status: schemas.StatusActive}
}

func cmd(p schemas.Protocol, kind, text, status string) *schemas.Command {
	exit := int32(0)
	c := &schemas.Command{CommandSeq: 3, SeqEnd: 7, Protocol: p, Kind: kind, Text: text, Status: status,
		StartedAt: t0.Add(time.Second), EndedAt: t0.Add(1500 * time.Millisecond), Rows: 2,
		Masks: map[string]int64{"email": 1}}
	if p == schemas.SSH {
		if status == "error" {
			exit = 3
		}
		c.ExitStatus = &exit
	}
	if status == "error" {
		c.Error = "ERROR 42P01: relation \"nope\" does not exist"
	}
	return c
}

// every returns one audit record of every kind the processors emit.
func every() map[string]audit.Record {
	pg, ssh := sessionOf(schemas.Postgres, "appdb"), sessionOf(schemas.SSH, "box")
	httpS, k8s := sessionOf(schemas.HTTP, "web"), sessionOf(schemas.Kubernetes, "cluster")
	denied := sessionOf(schemas.Postgres, "appdb")
	denied.Status, denied.EndReason = schemas.StatusDenied, "not in a group the target allows"
	ended := sessionOf(schemas.SSH, "box")
	ok, bad := true, false
	ended.Status, ended.EndReason, ended.SignatureOK, ended.FinalHash = schemas.StatusEnded, "client terminated", &ok, []byte{1, 2}
	tampered := sessionOf(schemas.SSH, "box")
	tampered.Status, tampered.SignatureOK, tampered.Integrity = schemas.StatusEnded, &bad, []string{"gap at seq 4: seqs 2..3 missing"}
	abandoned := sessionOf(schemas.Postgres, "appdb")
	abandoned.Status, abandoned.EndReason = schemas.StatusAbandoned, "no frames for 31m0s"
	anon := &schemas.Session{SessionID: "0193a3c2-0000-7000-8000-000000000000", Protocol: schemas.SSH}
	undecodable := audit.Alert(&schemas.Session{}, "undecodable", "tapline.frames.raw partition 0 offset 9: malformed value", -1, t0)
	undecodable.ID = "tapline.frames.raw/0/9/undecodable"
	return map[string]audit.Record{
		"session.start":           audit.Lifecycle(audit.TypeSessionStart, pg, 0, t0),
		"session.denied":          audit.Lifecycle(audit.TypeSessionDenied, denied, 0, t0),
		"session.denied/no-user":  audit.Lifecycle(audit.TypeSessionDenied, anon, 0, t0),
		"session.end":             audit.Lifecycle(audit.TypeSessionEnd, ended, 9, t0.Add(time.Minute)),
		"session.end/tampered":    audit.Lifecycle(audit.TypeSessionEnd, tampered, 9, t0.Add(time.Minute)),
		"session.abandoned":       audit.Lifecycle(audit.TypeSessionAbandoned, abandoned, 5, t0.Add(time.Hour)),
		"session.resumed":         audit.Lifecycle(audit.TypeSessionResumed, pg, 6, t0.Add(time.Hour)),
		"command/postgres-select": audit.Command(pg, cmd(schemas.Postgres, "query", "SELECT id FROM users WHERE email = '[masked:email]'", "ok")),
		"command/postgres-error":  audit.Command(pg, cmd(schemas.Postgres, "query", "select * from nope", "error")),
		"command/postgres-insert": audit.Command(pg, cmd(schemas.Postgres, "prepared", "INSERT INTO t VALUES ($1)", "incomplete")),
		"command/postgres-other":  audit.Command(pg, cmd(schemas.Postgres, "query", "", "cancelled")),
		"command/ssh-exec":        audit.Command(ssh, cmd(schemas.SSH, "exec", "uname -a; exit 3", "error")),
		"command/ssh-shell":       audit.Command(ssh, cmd(schemas.SSH, "shell", "ls -la", "ok")),
		"command/http":            audit.Command(httpS, cmd(schemas.HTTP, "request", "POST /api/orders", "ok")),
		"command/kubernetes":      audit.Command(k8s, cmd(schemas.Kubernetes, "request", "delete /api/v1/namespaces/x/pods/y", "ok")),
		"integrity.alert":         audit.Alert(tampered, "gap", "seqs 2..3 missing", 4, t0.Add(time.Second)),
		"integrity.alert/raw":     undecodable,
	}
}

func TestClassesAndReferences(t *testing.T) {
	want := map[string][2]int{ // class_uid, activity_id
		"session.start": {3002, 1}, "session.denied": {3002, 1}, "session.end": {3002, 2},
		"session.abandoned": {3002, 2}, "session.resumed": {3002, 99},
		"command/postgres-select": {6005, 1}, "command/postgres-insert": {6005, 5}, "command/postgres-other": {6005, 4},
		"command/ssh-exec": {4007, 6}, "command/http": {4002, 6}, "command/kubernetes": {6003, 4},
		"integrity.alert": {2004, 1},
	}
	recs := every()
	for name, w := range want {
		r := recs[name]
		e, err := FromAudit(&r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.ClassUID != w[0] || e.ActivityID != w[1] || e.TypeUID != w[0]*100+w[1] {
			t.Errorf("%s: class %d activity %d type %d, want %v", name, e.ClassUID, e.ActivityID, e.TypeUID, w)
		}
		// An analyst jumps from any event back to the replay: session id and seq.
		if e.Metadata.UID != r.ID || e.Metadata.CorrelationUID != r.SessionID || *e.Metadata.Sequence != r.Seq ||
			e.Unmapped["session_id"] != r.SessionID || e.Unmapped["seq"] != r.Seq {
			t.Errorf("%s: metadata %+v unmapped %v do not reference %s/%d", name, e.Metadata, e.Unmapped, r.SessionID, r.Seq)
		}
		if e.Time != t0.UnixMilli() && r.Type != audit.TypeCommand && r.Type != audit.TypeSessionEnd &&
			r.Type != audit.TypeSessionAbandoned && r.Type != audit.TypeSessionResumed && r.Type != audit.TypeIntegrity {
			t.Errorf("%s: time %d, want %d", name, e.Time, t0.UnixMilli())
		}
	}
	r := recs["command/postgres-error"]
	e, _ := FromAudit(&r)
	if *e.StatusID != 2 || e.StatusDetail != r.Error || e.Actor.User.UID != "ci-orders" || e.SrcEndpoint.IP != "10.0.0.5" ||
		e.SrcEndpoint.Port != 51000 || e.QueryInfo.QueryString != "select * from nope" || e.SeverityID != 2 {
		t.Errorf("failed SQL command mapped to %+v", e)
	}
	r = recs["command/ssh-exec"]
	e, _ = FromAudit(&r)
	if e.StatusCode != "3" || e.SrcEndpoint.Owner == nil || e.SrcEndpoint.Owner.EmailAddr != "ci@example.com" || e.Message != "uname -a; exit 3" {
		t.Errorf("ssh exec mapped to %+v", e)
	}
	r = recs["integrity.alert"]
	e, _ = FromAudit(&r)
	if e.SeverityID != 4 || e.FindingInfo.UID != r.ID || e.Resources[0].UID != r.SessionID {
		t.Errorf("alert mapped to %+v", e)
	}
}

func TestUnknownProtocolIsAnError(t *testing.T) {
	r := audit.Command(sessionOf("GOPHER", "x"), cmd("GOPHER", "x", "x", "ok"))
	if _, err := FromAudit(&r); err == nil || !strings.Contains(err.Error(), "GOPHER") {
		t.Fatalf("err = %v, want one naming the protocol", err)
	}
}

// Every event kind validates against the published OCSF schema, checked by an
// independent validator (the OCSF export in ocsf-json-schema, with jsonschema).
func TestEveryKindValidates(t *testing.T) {
	py, ok := testenv.Lookup("TAPLINE_OCSF_PYTHON")
	if testing.Short() {
		t.Skip("integration: needs the OCSF validator (skipped under -short)")
	}
	if !ok {
		if os.Getenv("CI") != "" {
			t.Fatalf("TAPLINE_OCSF_PYTHON is not set; run `%s`", testenv.Hint)
		}
		t.Skipf("TAPLINE_OCSF_PYTHON is not set; run `%s`", testenv.Hint)
	}
	var names []string
	var in bytes.Buffer
	for name, r := range every() {
		e, err := FromAudit(&r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		in.Write(b)
		in.WriteByte('\n')
	}
	results := Validate(t, py, in.Bytes())
	if len(results) != len(names) {
		t.Fatalf("validator answered %d lines for %d events", len(results), len(names))
	}
	for i, res := range results {
		for _, e := range res.Errors {
			t.Errorf("%s (class %d): %s", names[i], res.ClassUID, e)
		}
	}
}

// A broken event is reported: the validation above can fail.
func TestValidatorRejects(t *testing.T) {
	py, ok := testenv.Lookup("TAPLINE_OCSF_PYTHON")
	if testing.Short() || !ok {
		t.Skip("integration: needs the OCSF validator")
	}
	r := every()["command/postgres-select"]
	e, _ := FromAudit(&r)
	e.Database.TypeID = 42                       // not in the enum
	e.Unmapped = nil                             // allowed
	b, _ := json.Marshal(map[string]any{"x": 1}) // keeps json imported for the raw check below
	_ = b
	raw, _ := e.Marshal()
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["no_such_attribute"] = true // the classes allow no attributes beyond their own
	raw, _ = json.Marshal(m)
	res := Validate(t, py, append(raw, '\n'))
	if len(res) != 1 || len(res[0].Errors) < 2 {
		t.Fatalf("validator accepted a broken event: %+v", res)
	}
}

// Result is the validator's verdict on one event.
type Result struct {
	Line     int      `json:"line"`
	ClassUID int      `json:"class_uid"`
	Errors   []string `json:"errors"`
}

// Validate runs testdata/validate.py over JSON lines.
func Validate(t testing.TB, python string, jsonl []byte) []Result {
	t.Helper()
	c := exec.Command(python, "testdata/validate.py", Version)
	c.Stdin = bytes.NewReader(jsonl)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if _, exit := err.(*exec.ExitError); err != nil && (!exit || len(out) == 0) {
		t.Fatalf("validator: %v\n%s", err, stderr.String())
	}
	var res []Result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("validator output %q: %v", sc.Text(), err)
		}
		res = append(res, r)
	}
	return res
}

// audited stands in for the HTTP and Kubernetes protocol packages, which register
// their OCSF class as Postgres and SSH do.
type audited struct {
	name  schemas.Protocol
	class string
}

func (a audited) Name() schemas.Protocol { return a.name }
func (a audited) Kinds() []string        { return nil }
func (a audited) OCSFClass() string      { return a.class }

func TestMain(m *testing.M) {
	restoreHTTP := protocol.Swap(audited{schemas.HTTP, "http"})
	restoreK8s := protocol.Swap(audited{schemas.Kubernetes, "api"})
	code := m.Run()
	restoreHTTP()
	restoreK8s()
	os.Exit(code)
}
