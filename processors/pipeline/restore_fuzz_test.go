package pipeline

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var (
	fuzzPGKinds = []string{"Query", "Parse", "Bind", "Describe", "Execute", "Sync", "DataRow", "RowDescription",
		"CommandComplete", "ReadyForQuery", "ErrorResponse", "ParseComplete", "BindComplete", "CopyData",
		"CopyInResponse", "CopyDone", "PortalSuspended", "Close", "NoData", "ParameterDescription"}
	fuzzSSHKinds = []string{"ssh.channel.open", "ssh.request.pty-req", "ssh.request.exec", "ssh.request.shell",
		"ssh.channel.data", "ssh.request.exit-status", "ssh.channel.eof", "ssh.channel.close", "ssh.channel.extended-data"}
)

// FuzzRestoreAnywhere: any Postgres or SSH session, its messages whole or in
// fragments, gives the same frames, commands and summaries when the processor's
// state is saved and restored into a new processor before any of its frames as
// when it runs through. The runner's exactly-once guarantee rests on this.
func FuzzRestoreAnywhere(f *testing.F) {
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte { b, _ := m.Encode(nil); return b }
	f.Add(bytes.Join([][]byte{
		append([]byte{0x80}, enc(&pgproto3.Query{String: "SELECT 'password=hunter2', 1"})...),
		append([]byte{0x28}, enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...),
		append([]byte{0x29}, enc(&pgproto3.ReadyForQuery{TxStatus: 'I'})...),
	}, []byte{0xA5}), uint64(0b1010), false)
	f.Add(bytes.Join([][]byte{{0x00}, []byte("\x02{\"command\":\"sudo -i\"}"), []byte("\x04password: "),
		[]byte("\x04hunter2\r"), []byte("\x24root# ")}, []byte{0xA5}), uint64(0xff), true)
	f.Fuzz(func(t *testing.T, data []byte, restores uint64, ssh bool) {
		proto, kinds := schemas.Postgres, fuzzPGKinds
		if ssh {
			proto, kinds = schemas.SSH, fuzzSSHKinds
		}
		msgs := sessiontest.FuzzFrames(data, proto, kinds)
		if len(msgs) > 40 {
			msgs = msgs[:40]
		}
		s := sessiontest.Start(proto, alice, sessiontest.NewKey(2), t0)
		for _, m := range msgs {
			limit := len(m.Payload) + 1
			if m.Fragment > 0 || !m.Final {
				limit = max(len(m.Payload)/3, 1) // fragmented: about three pieces
			}
			s.AddFragmented(m.Direction, m.Kind, m.Channel, m.Payload, limit)
		}
		s.End("client terminated")

		want := marshalOutput(t, processAll(sharedProcessor(t), s.Frames))
		p := sharedProcessor(t)
		saved := map[string][]byte{}
		var got Output
		for i, fr := range s.Frames {
			if restores&(1<<(i%64)) != 0 {
				p = restoreShared(t, p, saved)
			}
			p.Frame(fr, &got)
		}
		if g := marshalOutput(t, got); g != want {
			i := 0
			for i < len(g) && i < len(want) && g[i] == want[i] {
				i++
			}
			from := max(i-200, 0)
			t.Fatalf("outputs differ after save and restore (restores %b) at byte %d\n got …%.400s\nwant …%.400s", restores, i, g[from:], want[from:])
		}
	})
}

// restoreShared moves every session's state through bytes into a new processor.
func restoreShared(t *testing.T, p *Processor, saved map[string][]byte) *Processor {
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
	q := sharedProcessor(t)
	for id, v := range saved {
		if err := q.Restore(id, v); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

// FuzzValidUTF8MatchesJSON: validUTF8 gives the text encoding/json gives back
// after saving it, for any bytes.
func FuzzValidUTF8MatchesJSON(f *testing.F) {
	f.Add("plain")
	f.Add("caf\xe9 \xff\xfe\xe2\x82 done \u2028")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := validUTF8(s); got != back {
			t.Fatalf("validUTF8(%q) = %q, encoding/json keeps %q", s, got, back)
		}
	})
}
