package sessiontest

import (
	"bytes"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// FuzzFrames cuts data into frames at each 0xA5 byte; the byte after a cut picks the
// frame's kind (from kinds), direction, channel and fragmentation.
func FuzzFrames(data []byte, proto schemas.Protocol, kinds []string) []schemas.Frame {
	var out []schemas.Frame
	seq := int64(1)
	frag := map[string]int32{}
	for _, part := range bytes.Split(data, []byte{0xA5}) {
		sel := byte(0)
		if len(part) > 0 {
			sel, part = part[0], part[1:]
		}
		f := schemas.Frame{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Seq: seq, TS: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC), Protocol: proto,
			Kind: kinds[int(sel&0x1f)%len(kinds)], Direction: schemas.Client, Channel: int64(sel>>6) & 1,
			Payload: append([]byte(nil), part...), Final: true}
		if sel&0x20 != 0 {
			f.Direction = schemas.Server
		}
		if proto == schemas.Postgres && sel&0x80 != 0 {
			// Part of a fragmented message: the run continues until a final frame.
			f.Fragment, f.Final = frag[f.Kind], sel&0x40 != 0
			frag[f.Kind]++
			if f.Final {
				delete(frag, f.Kind)
			}
		}
		out = append(out, f)
		seq++
	}
	return out
}

// CheckCommands checks what a stitcher emitted: it names frames that exist.
func CheckCommands(t testing.TB, cmds []schemas.Command, last int64) {
	for _, c := range cmds {
		if c.CommandSeq < 0 || c.CommandSeq > last {
			t.Fatalf("command names seq %d, frames end at %d", c.CommandSeq, last)
		}
	}
}
