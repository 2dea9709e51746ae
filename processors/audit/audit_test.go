package audit

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// docs/audit-format.md documents every field of Record, and nothing else.
func TestEveryFieldIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-format.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	fields := map[string]bool{}
	rt := reflect.TypeOf(Record{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		fields[name] = true
		if !documented[name] {
			t.Errorf("field %q is not documented in docs/audit-format.md", name)
		}
	}
	for name := range documented {
		if !fields[name] {
			t.Errorf("docs/audit-format.md documents %q, which Record does not have", name)
		}
	}
}

func TestRecordsAreFlat(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	yes := true
	s := &schemas.Session{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Protocol: schemas.Postgres, Target: "app",
		Subject: "ci", Groups: []string{"dba"}, Status: schemas.StatusEnded, FinalHash: []byte{1, 2}, SignatureOK: &yes,
		Integrity: []string{"gap at seq 4: seqs 2..3 missing"}}
	exit := int32(2)
	c := &schemas.Command{SessionID: s.SessionID, CommandSeq: 3, SeqEnd: 5, Kind: "exec", Text: "false", Status: "error",
		StartedAt: ts, EndedAt: ts.Add(1500 * time.Microsecond), ExitStatus: &exit, Masks: map[string]int64{"email": 2, "card": 1}}
	for _, r := range []Record{Command(s, c), Lifecycle(TypeSessionEnd, s, 9, ts), Alert(s, "gap", "seqs 2..3 missing", 4, ts)} {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				t.Errorf("%s: field %s is an object", r.Type, k)
			case []any:
				for _, e := range v {
					if _, ok := e.(string); !ok {
						t.Errorf("%s: field %s holds a %T", r.Type, k, e)
					}
				}
			}
		}
	}
	cr := Command(s, c)
	if *cr.DurationMS != 1.5 || cr.MaskedCount != 3 || !sort.StringsAreSorted(cr.MaskedTypes) || cr.Outcome != "failure" ||
		cr.ID != s.SessionID+"/3/command" || cr.Time != "2026-03-01T12:00:00.001500Z" {
		t.Errorf("command record %+v", cr)
	}
	if e := Lifecycle(TypeSessionEnd, s, 9, ts); e.Severity != "high" || e.FinalHash != "0102" {
		t.Errorf("end record with integrity problems %+v", e)
	}
}
