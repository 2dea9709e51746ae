package stitch

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
)

// fuzzFrames cuts data into frames at each 0xA5 byte; the byte after a cut picks the
// frame's kind (from kinds), direction, channel and fragmentation.
func fuzzFrames(data []byte, proto schemas.Protocol, kinds []string) []schemas.Frame {
	var out []schemas.Frame
	seq := int64(1)
	frag := map[string]int32{}
	for _, part := range bytes.Split(data, []byte{0xA5}) {
		sel := byte(0)
		if len(part) > 0 {
			sel, part = part[0], part[1:]
		}
		f := schemas.Frame{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Seq: seq, TS: t0, Protocol: proto,
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

// checkCommands checks what a stitcher emitted: it names frames that exist and
// survives the processors' state round trip.
func checkCommands(t *testing.T, cmds []schemas.Command, last int64) {
	for _, c := range cmds {
		if c.CommandSeq < 0 || c.CommandSeq > last {
			t.Fatalf("command names seq %d, frames end at %d", c.CommandSeq, last)
		}
	}
}

var sshStitchKinds = []string{"ssh.channel.open", "ssh.request.pty-req", "ssh.request.exec", "ssh.request.subsystem",
	"ssh.request.shell", "ssh.channel.data", "ssh.request.exit-status", "ssh.request.exit-signal", "ssh.channel.eof",
	"ssh.channel.close", "ssh.request.env", "ssh.global.tcpip-forward", "ssh.channel.extended-data"}

// FuzzStitchSSH: any sequence of SSH frames with any payloads stitches without panic,
// and the state survives a save and restore.
func FuzzStitchSSH(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x07session\xa5\x04\xa5\x05ls -la\r\xa5\x26\x00\x00\x00\x00\xa5\x09"))
	f.Add([]byte("\x02\x00\x00\x00\x02ls\xa5\x26\xff\xff\xa5\x07\x00\x00\x00\x01X"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &SSH{}
		frames := fuzzFrames(data, schemas.SSH, sshStitchKinds)
		for i := range frames {
			checkCommands(t, st.Frame(&frames[i], Limits{}), int64(len(frames)))
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			st = &SSH{}
			if err := json.Unmarshal(b, st); err != nil {
				t.Fatal(err)
			}
		}
		if len(frames) > 0 {
			checkCommands(t, st.Flush(&frames[len(frames)-1], "end"), int64(len(frames)))
		}
	})
}

var pgStitchKinds = []string{"Query", "Parse", "Bind", "Describe", "Execute", "Sync", "DataRow", "RowDescription",
	"CommandComplete", "ReadyForQuery", "ErrorResponse", "ParseComplete", "BindComplete", "CopyData", "CopyInResponse",
	"CopyDone", "PortalSuspended", "EmptyQueryResponse", "FunctionCall", "Close", "NoData", "ParameterDescription"}

// FuzzStitchPostgres: any sequence of Postgres frames, whole or fragmented, with any
// payloads stitches without panic.
func FuzzStitchPostgres(f *testing.F) {
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte { b, _ := m.Encode(nil); return b }
	seed := bytes.Join([][]byte{
		append([]byte{0x01}, enc(&pgproto3.Parse{Name: "s", Query: "select $1"})...),
		append([]byte{0x02}, enc(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("x")}})...),
		append([]byte{0x04}, enc(&pgproto3.Execute{})...),
		append([]byte{0x05}, enc(&pgproto3.Sync{})...),
		append([]byte{0x2b}, enc(&pgproto3.ParseComplete{})...),
		append([]byte{0x28}, enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...),
		append([]byte{0x29}, enc(&pgproto3.ReadyForQuery{TxStatus: 'I'})...),
	}, []byte{0xA5})
	f.Add(seed)
	// A Bind whose value length is negative (not -1): pgproto3 panics decoding it.
	f.Add(append([]byte{0x02}, []byte("B\x00\x00\x00\x14\x00s\x00\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &PG{}
		frames := fuzzFrames(data, schemas.Postgres, pgStitchKinds)
		for i := range frames {
			checkCommands(t, p.Frame(&frames[i], Limits{}), int64(len(frames)))
			p.RowColumns()
		}
		if len(frames) > 0 {
			checkCommands(t, p.Flush(&frames[len(frames)-1], "end"), int64(len(frames)))
		}
	})
}
