package ssh

import (
	"bufio"
	"fmt"
	"github.com/tapline/tapline/schemas/message"
	"io"
	"iter"
	"unicode/utf8"

	"github.com/tapline/tapline/schemas/textsafe"
)

// maxLine bounds the line buffer of the text terminal; a longer line is written out
// in pieces (backspaces can then no longer reach past the cut).
const maxLine = 64 << 10

// WriteText writes an SSH session as plain text: the commands (exec requests and
// shells), their output with terminal control sequences removed and backspaces
// applied, exit statuses, and the session's start and end. Channels are told apart
// with a header line whenever the output switches channel.
func WriteText(w io.Writer, events iter.Seq2[Event, error], flush func()) error {
	t := &textTerm{w: bufio.NewWriter(w), channel: -1}
	for ev, err := range events {
		if err != nil {
			return err
		}
		t.event(&ev)
		if err := t.w.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	t.endLine()
	return t.w.Flush()
}

type textTerm struct {
	w       *bufio.Writer
	channel int64 // channel whose output was written last
	line    []byte
	esc     Escapes
	cr      bool // a CR was seen: a following LF makes it one newline
}

func (t *textTerm) event(ev *Event) {
	ts := ev.Time.UTC().Format(message.TimeLayout)
	switch ev.Type {
	case "session.start", "session.denied":
		if s := ev.Start; s != nil {
			t.meta("# %s  %s", ts, message.DescribeStart(s))
		}
		if ev.Type == "session.denied" {
			t.meta("# denied: %s", ev.Message)
		}
	case "session.end":
		t.meta("# %s  session ended: %s", ts, ev.End.Reason)
	case "request":
		t.request(ev, ts)
	case "output":
		if ev.Channel != t.channel {
			t.meta("# channel %d", ev.Channel)
			t.channel = ev.Channel
		}
		t.write([]byte(ev.Data))
	case "note":
		t.meta("# note (seq %d): %s", ev.Seq, ev.Message)
	}
}

func (t *textTerm) request(ev *Event, ts string) {
	switch ev.Request {
	case "exec":
		t.meta("# %s  channel %d exec", ts, ev.Channel)
		t.meta("$ %s", ev.Command)
	case "shell":
		t.meta("# %s  channel %d shell", ts, ev.Channel)
	case "subsystem":
		t.meta("# %s  channel %d subsystem %s", ts, ev.Channel, ev.Command)
	case "exit-status":
		if ev.ExitStatus == nil {
			// A malformed exit-status request (ev.Message says why) has no status.
			t.meta("# channel %d exit status unreadable: %s", ev.Channel, ev.Message)
			break
		}
		t.meta("# channel %d exit status %d", ev.Channel, *ev.ExitStatus)
	case "exit-signal":
		t.meta("# channel %d killed by signal %s %s", ev.Channel, ev.Command, ev.Message)
	default:
		return
	}
	t.channel = ev.Channel
}

// meta writes one line of our own, on a line of its own. Its recorded parts
// (commands, reasons, identities) are escaped: a command carrying "\r\x1b[2K" must
// not erase itself on the reader's terminal.
func (t *textTerm) meta(format string, args ...any) {
	t.endLine()
	t.w.WriteString(textsafe.Line(fmt.Sprintf(format, args...)))
	t.w.WriteByte('\n')
}

func (t *textTerm) endLine() {
	if len(t.line) > 0 {
		t.w.WriteString(textsafe.Text(string(t.line)))
		t.w.WriteByte('\n')
		t.line = t.line[:0]
	}
}

// write feeds terminal output through a small terminal model: escape sequences are
// dropped (schemas/ssh.Escapes), CR LF and lone CR end a line, backspace erases the
// previous character.
func (t *textTerm) write(b []byte) {
	for _, c := range b {
		if t.esc.Text(c) {
			t.text(c)
		}
	}
}

func (t *textTerm) text(c byte) {
	cr := t.cr
	t.cr = false
	switch {
	case c == '\r':
		t.cr = true
		t.flushLine()
	case c == '\n':
		if !cr {
			t.flushLine()
		}
	case c == '\b' || c == 0x7F:
		t.backspace()
	case c == '\t' || c >= 0x20:
		t.line = append(t.line, c)
		if len(t.line) >= maxLine {
			t.flushLine()
		}
	}
}

// flushLine writes the line the terminal model built. Escape sequences and C0
// controls were consumed above; textsafe catches what is left (C1 controls, bytes
// that are not UTF-8, bidirectional overrides).
func (t *textTerm) flushLine() {
	t.w.WriteString(textsafe.Text(string(t.line)))
	t.w.WriteByte('\n')
	t.line = t.line[:0]
}

func (t *textTerm) backspace() {
	if len(t.line) == 0 {
		return
	}
	_, n := utf8.DecodeLastRune(t.line)
	t.line = t.line[:len(t.line)-n]
}
