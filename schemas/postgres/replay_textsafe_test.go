package postgres

import (
	"iter"
	"strings"
	"testing"
	"time"
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

func TestPostgresTextEscapesStatements(t *testing.T) {
	now := time.Now()
	v := "x\x1b[8m"
	var b strings.Builder
	err := WriteText(&b, seqOf(
		Event{Type: "statement", Time: now, Statement: &Statement{Text: "SELECT 1;\n-- " + hidden, Params: []*string{&v}, Start: now}},
		Event{Type: "note", Time: now, Message: hidden},
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	assertEscaped(t, b.String())
	if !strings.Contains(b.String(), "SELECT 1;\n") {
		t.Errorf("multi-line SQL lost its newline:\n%s", b.String())
	}
}
