package replay

import (
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
)

// The replay decoders parse recorded protocol bytes: any payload under any kind
// must decode to events or notes, never panic, and text output stays escaped.
func FuzzReplayDecoders(f *testing.F) {
	f.Add(true, "Query", []byte("Q\x00\x00\x00\x0dSELECT 1\x00"))
	f.Add(false, "ssh.request.exec", []byte("\x00\x00\x00\x02ls"))
	f.Add(false, "ssh.channel.data", []byte("\x1b[2Jhello\r\n"))
	f.Fuzz(func(t *testing.T, pg bool, kind string, payload []byte) {
		p := schemas.SSH
		if pg {
			p = schemas.Postgres
		}
		frames := []schemas.Frame{
			{Seq: 0, Kind: schemas.KindSessionStart, Direction: schemas.Server, Start: &schemas.SessionStart{Subject: "a"}, Payload: []byte("{}"), Final: true},
			{Seq: 1, Kind: kind, Direction: schemas.Client, Payload: payload, Final: true},
			{Seq: 2, Kind: kind, Direction: schemas.Server, Payload: payload, Final: true},
		}
		var b strings.Builder
		if err := Write(&b, p, FormatText, seqOf(frames...), Options{}, nil); err != nil {
			return
		}
		for _, r := range b.String() {
			if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
				t.Fatalf("%U in text replay of %s %q", r, kind, payload)
			}
		}
	})
}
