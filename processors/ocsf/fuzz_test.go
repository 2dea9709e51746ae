package ocsf

import (
	"encoding/json"
	"testing"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/schemas"
)

// The agent controls command texts and (through its connection) the client address;
// whatever they are, the event is JSON that keeps the session reference.
func FuzzFromAudit(f *testing.F) {
	f.Add("POSTGRES", "SELECT 1", "10.0.0.5:51000", "ok")
	f.Add("SSH", "uname -a; exit 3", "[::1]:22", "error")
	f.Add("HTTP", "GET /x?y=\x00", "nonsense", "incomplete")
	f.Add("KUBERNETES", "", "", "cancelled")
	f.Fuzz(func(t *testing.T, proto, text, addr, status string) {
		s := sessionOf(schemas.Protocol(proto), "t")
		s.ClientAddr = addr
		r := audit.Command(s, cmd(schemas.Protocol(proto), "query", text, status))
		e, err := FromAudit(&r)
		if err != nil {
			return // an unknown protocol
		}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Metadata.UID != r.ID || back.Metadata.CorrelationUID != s.SessionID || back.TypeUID != back.ClassUID*100+back.ActivityID {
			t.Fatalf("event lost its identity: %s", b)
		}
		if back.SrcEndpoint == nil || back.SrcEndpoint.IP == "" && back.SrcEndpoint.Name == "" {
			t.Fatalf("source endpoint without ip or name (OCSF requires one): %s", b)
		}
	})
}
