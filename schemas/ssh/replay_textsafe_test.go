package ssh

import (
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/message"
)

func seqOf[T any](evs ...T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, e := range evs {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// hidden is a command that, printed raw, shows on a terminal as "uptime".
const hidden = "rm -rf /data\r\x1b[2Kuptime"

func assertEscaped(t *testing.T, out string) {
	t.Helper()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("control characters reach the terminal:\n%q", out)
	}
	if !strings.Contains(out, `rm -rf /data\r\x1b[2Kuptime`) {
		t.Errorf("the hidden command is not shown escaped:\n%s", out)
	}
}

func TestSSHTextEscapesCommands(t *testing.T) {
	now := time.Now()
	start := &schemas.SessionStart{Subject: "agent\x1b]0;title\x07", Target: "box"}
	var b strings.Builder
	err := WriteText(&b, seqOf(
		Event{Type: "session.start", Time: now, Start: start},
		Event{Type: "request", Request: "exec", Channel: 0, Command: hidden, Time: now},
		Event{Type: "output", Channel: 0, Data: "ok\x9b\n"},
		Event{Type: "session.end", Time: now, End: &message.SessionEnd{Reason: "closed\r\x1b[2Kfine"}},
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	assertEscaped(t, b.String())
	if strings.Contains(b.String(), "\x9b") || strings.Contains(b.String(), "\x07") {
		t.Errorf("C1 or BEL reaches the terminal:\n%q", b.String())
	}
}

func FuzzSSHText(f *testing.F) {
	f.Add([]byte("ls\r\n\x1b[31mred\x1b[0m\x08\x08ab\x1b]0;t\x07"), hidden)
	f.Fuzz(func(t *testing.T, data []byte, cmd string) {
		var b strings.Builder
		err := WriteText(&b, seqOf(
			Event{Type: "request", Request: "exec", Command: cmd},
			Event{Type: "output", Data: string(data)},
		), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.String() {
			if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f {
				t.Fatalf("%U reaches the terminal: %q", r, b.String())
			}
		}
	})
}
