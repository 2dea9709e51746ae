package corpus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tapline/tapline/query/replay"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/postgres"
	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// shown is one command as a user sees it: in the processors' commands, or in a replay.
type shown struct {
	Seq, SeqEnd int64
	Text        string
	Status      string
}

func (s shown) String() string { return fmt.Sprintf("%d..%d %s %q", s.Seq, s.SeqEnd, s.Status, s.Text) }

// TestStitchedCommandsMatchReplay: for every corpus session, the commands the
// processors stitch are the statements (Postgres) or the exec, subsystem, shell and
// forward requests (SSH) the replay shows: same count, text, seq range and status.
func TestStitchedCommandsMatchReplay(t *testing.T) {
	total := 0
	defer func() {
		if total < 20 {
			t.Errorf("the corpus stitched only %d commands: it lost its point", total)
		}
	}()
	for _, r := range corpus(t) {
		t.Run(r.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := protocolOf(r.frames)
			if err := replay.Write(&buf, p, replay.FormatJSON, seq(r.out.Frames), replay.Options{}, nil); err != nil {
				t.Fatal(err)
			}
			var stitched, replayed []shown
			if p == schemas.Postgres {
				stitched, replayed = pgStitched(r.out.Commands), pgReplayed(t, buf.Bytes())
			} else {
				stitched, replayed = sshStitched(r.out.Commands), sshReplayed(t, buf.Bytes())
			}
			total += len(stitched)
			if len(stitched) != len(replayed) {
				t.Fatalf("%d commands stitched, %d shown by the replay:\nstitched %v\nreplayed %v", len(stitched), len(replayed), stitched, replayed)
			}
			for i := range stitched {
				if stitched[i] != replayed[i] {
					t.Errorf("command %d: stitched %v, replay shows %v", i, stitched[i], replayed[i])
				}
			}
		})
	}
}

func pgStitched(cs []schemas.Command) []shown {
	var out []shown
	for _, c := range cs {
		out = append(out, shown{c.CommandSeq, c.SeqEnd, c.Text, c.Status})
	}
	return out
}

func pgReplayed(t *testing.T, ndjson []byte) []shown {
	var out []shown
	for _, ev := range decodeLines[postgres.Event](t, ndjson) {
		if ev.Type != "statement" {
			continue
		}
		st := ev.Statement
		status := "ok"
		switch {
		case st.Cancelled:
			status = "cancelled"
		case st.Error != nil:
			status = "error"
		case st.End.IsZero():
			status = "incomplete"
		}
		text := st.Text
		if st.Protocol == "simple" && strings.HasPrefix(strings.ToLower(text), "\\copy") {
			text = strings.TrimPrefix(text, "\\")
		}
		out = append(out, shown{ev.Seq, st.SeqEnd, text, status})
	}
	return out
}

// sshStitched keeps the commands the replay shows as requests: exec, subsystem,
// the interactive shell and port forwards (lines typed into a shell are in the
// replay's terminal, not its requests).
func sshStitched(cs []schemas.Command) []shown {
	var out []shown
	for _, c := range cs {
		switch c.Kind {
		case "exec", "subsystem", "shell.session", "forward":
			out = append(out, shown{c.CommandSeq, c.SeqEnd, c.Text, c.Status})
		}
	}
	sortShown(out)
	return out
}

func sshReplayed(t *testing.T, ndjson []byte) []shown {
	open := map[int64]int{} // channel → index in out of its open command
	pty := map[int64]string{}
	var out []shown
	for _, ev := range decodeLines[sshproto.Event](t, ndjson) {
		switch {
		case ev.Type == "open" && ev.Command != "session":
			open[ev.Channel] = len(out)
			out = append(out, shown{ev.Seq, ev.Seq, ev.Message, "ok"})
		case ev.Type == "request" && ev.Request == "pty-req":
			pty[ev.Channel] = fmt.Sprintf(" (pty %s %dx%d)", ev.Term, ev.Cols, ev.Rows)
		case ev.Type == "request" && (ev.Request == "exec" || ev.Request == "subsystem" || ev.Request == "shell"):
			text := ev.Command
			if ev.Request == "shell" {
				text = "interactive shell" + pty[ev.Channel]
			}
			open[ev.Channel] = len(out)
			out = append(out, shown{ev.Seq, ev.Seq, text, "incomplete"})
		case ev.Type == "request" && (ev.Request == "exit-status" || ev.Request == "exit-signal"):
			i, ok := open[ev.Channel]
			if !ok {
				continue
			}
			out[i].SeqEnd, out[i].Status = ev.Seq, "ok"
			if ev.Request == "exit-signal" || (ev.ExitStatus != nil && *ev.ExitStatus != 0) {
				out[i].Status = "error"
			}
			delete(open, ev.Channel)
		}
	}
	sortShown(out)
	return out
}

func sortShown(s []shown) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Seq < s[j-1].Seq; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func decodeLines[T any](t *testing.T, b []byte) []T {
	var out []T
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}
