package pipeline

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	kube "github.com/tapline/tapline/schemas/kubernetes"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var (
	fuzzPGKinds = []string{"Query", "Parse", "Bind", "Describe", "Execute", "Sync", "DataRow", "RowDescription",
		"CommandComplete", "ReadyForQuery", "ErrorResponse", "ParseComplete", "BindComplete", "CopyData",
		"CopyInResponse", "CopyDone", "PortalSuspended", "Close", "NoData", "ParameterDescription"}
	fuzzSSHKinds = []string{"ssh.channel.open", "ssh.request.pty-req", "ssh.request.exec", "ssh.request.shell",
		"ssh.channel.data", "ssh.request.exit-status", "ssh.channel.eof", "ssh.channel.close", "ssh.channel.extended-data"}
	fuzzProtocols = []struct {
		p     schemas.Protocol
		kinds []string
	}{{schemas.Postgres, fuzzPGKinds}, {schemas.SSH, fuzzSSHKinds}, {schemas.HTTP, hs.Kinds}, {schemas.Kubernetes, kube.Kinds}}
)

// FuzzRestoreAnywhere: any Postgres, SSH, HTTP or Kubernetes session (or two
// such sessions, interleaved), its messages whole or in fragments, gives the
// same frames, commands and summaries when the processor's state is saved and
// restored into a new processor before any of its frames as when it runs
// through. The runner's exactly-once guarantee rests on this.
func FuzzRestoreAnywhere(f *testing.F) {
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte { b, _ := m.Encode(nil); return b }
	f.Add(bytes.Join([][]byte{
		append([]byte{0x80}, enc(&pgproto3.Query{String: "SELECT 'password=hunter2', 1"})...),
		append([]byte{0x28}, enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...),
		append([]byte{0x29}, enc(&pgproto3.ReadyForQuery{TxStatus: 'I'})...),
	}, []byte{0xA5}), uint64(0b1010), uint8(0))
	f.Add(bytes.Join([][]byte{{0x00}, []byte("\x02{\"command\":\"sudo -i\"}"), []byte("\x04password: "),
		[]byte("\x04hunter2\r"), []byte("\x24root# ")}, []byte{0xA5}), uint64(0xff), uint8(1))
	head := hs.EncodeHead(&hs.Head{Method: "POST", Target: "/login", Host: "api", Path: "/login", Proto: "HTTP/1.1",
		Headers: []hs.Field{{Name: "Authorization", Value: "Bearer abc.def"}, {Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "22"}}})
	reply := hs.EncodeHead(&hs.Head{Status: 200, Proto: "HTTP/1.1", Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"},
		{Name: "Content-Length", Value: "36"}}})
	exchange := bytes.Join([][]byte{append([]byte{0x00}, head...), []byte("\x01{\"password\":\"hunter2\"}"),
		append([]byte{0x02}, hs.EncodeEnd(&hs.End{Bytes: 22})...), append([]byte{0x23}, reply...),
		[]byte("\x24{\"token\":\"sk_live_0123456789abcdef\"}"), append([]byte{0x25}, hs.EncodeEnd(&hs.End{Bytes: 36})...)}, []byte{0xA5})
	f.Add(exchange, uint64(0b101010), uint8(2))
	f.Add(append(append([]byte{0x20 | byte(slices.Index(kube.Kinds, kube.KindStdout))}, []byte("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")...), append([]byte{0xA5}, exchange...)...), uint64(0b11), uint8(3))
	f.Add(bytes.Join([][]byte{
		append([]byte{0x81}, enc(&pgproto3.Parse{Name: "s", Query: "UPDATE users SET password = $1"})...),
		append([]byte{0x02}, enc(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("hunter2")}})...),
		append([]byte{0x84}, enc(&pgproto3.Execute{})...), append([]byte{0x05}, enc(&pgproto3.Sync{})...),
		append([]byte{0x2b}, enc(&pgproto3.ParseComplete{})...), append([]byte{0x28}, enc(&pgproto3.CommandComplete{CommandTag: []byte("UPDATE 1")})...),
	}, []byte{0xA5}), uint64(0x5555), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, restores uint64, which uint8) {
		proto, kinds := fuzzProtocols[int(which)%len(fuzzProtocols)].p, fuzzProtocols[int(which)%len(fuzzProtocols)].kinds
		msgs := sessiontest.FuzzFrames(data, proto, kinds)
		if len(msgs) > 40 {
			msgs = msgs[:40]
		}
		build := func(start schemas.SessionStart) []schemas.Frame {
			s := sessiontest.Start(proto, start, sessiontest.NewKey(2), t0)
			for _, m := range msgs {
				limit := len(m.Payload) + 1
				if m.Fragment > 0 || !m.Final {
					limit = max(len(m.Payload)/3, 1) // fragmented: about three pieces
				}
				s.AddFragmented(m.Direction, m.Kind, m.Channel, m.Payload, limit)
			}
			s.End("client terminated")
			return s.Frames
		}
		frames := build(alice)
		if which&4 != 0 {
			// A second session with the same messages, its frames alternating
			// with the first's: state of one must not reach the other.
			bob := alice
			bob.Subject = "bob"
			frames = alternate(frames, build(bob))
		}

		want := marshalOutput(t, processAll(sharedProcessor(t), frames))
		p := sharedProcessor(t)
		saved := map[string][]byte{}
		var got Output
		for i, fr := range frames {
			if restores&(1<<(i%64)) != 0 {
				p = saveRestoreInto(t, p, saved, sharedProcessor)
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

// alternate merges two sessions' frames, one from each in turn.
func alternate(a, b []schemas.Frame) []schemas.Frame {
	out := make([]schemas.Frame, 0, len(a)+len(b))
	for i := 0; i < max(len(a), len(b)); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
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
