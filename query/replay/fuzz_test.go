package replay

import (
	"bytes"
	"io"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// fuzzFrames cuts data into frames at each 0xA5 byte; the byte after a cut picks the
// frame's kind, direction, channel, fragmentation and whether its payload was
// withheld by the processors.
func fuzzFrames(data []byte, proto schemas.Protocol, kinds []string) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		frag := map[string]int32{}
		for i, part := range bytes.Split(data, []byte{0xA5}) {
			sel := byte(0)
			if len(part) > 0 {
				sel, part = part[0], part[1:]
			}
			f := schemas.Frame{SessionID: "s", Seq: int64(i), TS: t0.Add(time.Duration(i) * time.Millisecond), Protocol: proto,
				Kind: kinds[int(sel&0x0f)%len(kinds)], Direction: schemas.Client, Channel: int64(sel>>4) & 1,
				Payload: part, Final: true}
			if sel&0x20 != 0 {
				f.Direction = schemas.Server
			}
			if sel&0x40 != 0 {
				f.Payload, f.Masks = nil, map[string]int64{schemas.MaskWithheld: 1}
			}
			if sel&0x80 != 0 {
				f.Fragment, f.Final = frag[f.Kind], len(part)%2 == 0
				frag[f.Kind]++
				if f.Final {
					delete(frag, f.Kind)
				}
			}
			if !yield(f, nil) {
				return
			}
		}
	}
}

var sshReplayKinds = []string{"ssh.channel.open", "ssh.request.pty-req", "ssh.request.exec", "ssh.request.shell",
	"ssh.channel.data", "ssh.request.exit-status", "ssh.request.exit-signal", "ssh.request.window-change",
	"ssh.channel.close", "ssh.request.env", "ssh.channel.extended-data", "ssh.request.subsystem"}

var pgReplayKinds = []string{"Query", "Parse", "Bind", "Execute", "DataRow", "RowDescription", "CommandComplete",
	"ReadyForQuery", "ErrorResponse", "CopyData", "ParameterDescription", "FunctionCall", "StartupMessage",
	"NoticeResponse", "Describe", "Sync"}

// FuzzReplaySSH: every SSH replay format renders any frames without panic.
func FuzzReplaySSH(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x07session\xa5\x01\x00\x00\x00\x05xterm\x00\x00\x00\x50\x00\x00\x00\x18\xa5\x03\xa5\x24hello\xa5\x05\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{FormatText, FormatJSON, FormatAsciicast} {
			_ = Write(io.Discard, schemas.SSH, format, fuzzFrames(data, schemas.SSH, sshReplayKinds), Options{}, nil)
		}
	})
}

// FuzzReplayPostgres: every Postgres replay format renders any frames without panic.
func FuzzReplayPostgres(f *testing.F) {
	f.Add([]byte("\x00Q\x00\x00\x00\x0dselect 1\x00\xa5\x25T\x00\x00\x00\x06\x00\x00\xa5\x27Z\x00\x00\x00\x05I"))
	f.Add([]byte("\x02B\x00\x00\x00\x14\x00s\x00\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{FormatText, FormatJSON} {
			_ = Write(io.Discard, schemas.Postgres, format, fuzzFrames(data, schemas.Postgres, pgReplayKinds), Options{}, nil)
		}
	})
}

func TestMalformedExitStatusAndWithheldPayloadAreReported(t *testing.T) {
	// Kinds: 5 = exit-status with a 2-byte payload (not a uint32), then channel data
	// withheld by the processors (0x40).
	data := []byte("\x05\xff\xff\xa5\x44")
	var out bytes.Buffer
	if err := Write(&out, schemas.SSH, FormatText, fuzzFrames(data, schemas.SSH, sshReplayKinds), Options{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"exit status unreadable", "payload withheld"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("replay does not say %q:\n%s", want, out.String())
		}
	}
}

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

func seqOf[T any](evs ...T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, e := range evs {
			if !yield(e, nil) {
				return
			}
		}
	}
}
