package ssh

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

func newReplaySSH() *sessiontest.Builder {
	return sessiontest.New(schemas.SSH, schemas.SessionStart{Issuer: "https://idp", Subject: "ci-bot", Target: "box", ClientAddr: "127.0.0.1:6000"})
}

func openSession(b *sessiontest.Builder, ch int64) {
	b.Step(time.Millisecond).Client("ssh.channel.open", ch, ssh.Marshal(struct{ Type string }{"session"}))
}

// terminalSession: a pty shell on channel 1 whose output splits a UTF-8 character
// across two packets and is fragmented past 64 bytes, with a window change, and an
// exec on channel 0 whose output must not appear in the terminal.
func terminalSession() (*sessiontest.Builder, []byte) {
	b := newReplaySSH()
	openSession(b, 0)
	b.Step(time.Millisecond).Client("ssh.request.exec", 0, ssh.Marshal(struct{ Cmd string }{"uname -a"}))
	b.Step(time.Millisecond).Server("ssh.channel.data", 0, []byte("Linux box\n"))
	b.Step(time.Millisecond).Server("ssh.request.exit-status", 0, ssh.Marshal(struct{ S uint32 }{0}))
	openSession(b, 1)
	b.Step(time.Millisecond).Client("ssh.request.pty-req", 1, ssh.Marshal(ptyReq{Term: "xterm-256color", Cols: 120, Rows: 40}))
	b.Step(time.Millisecond).Client("ssh.request.shell", 1, nil)
	var want []byte
	out := func(d time.Duration, data string) {
		b.Step(d).Server("ssh.channel.data", 1, []byte(data))
		want = append(want, data...)
	}
	out(100*time.Millisecond, "\x1b[1;32mci-bot@box\x1b[0m:~$ ")
	b.Step(time.Second).Client("ssh.channel.data", 1, []byte("echo héllo\r"))
	euro := "€" // three bytes, split across two packets
	out(10*time.Millisecond, "echo h\xc3")
	out(time.Millisecond, "\xa9llo\r\nh\xc3\xa9llo "+euro[:2])
	out(time.Millisecond, euro[2:]+"\r\n")
	b.Step(500*time.Millisecond).Client("ssh.request.window-change", 1, ssh.Marshal(windowChange{Cols: 100, Rows: 30}))
	b.FragmentBytes = 64
	out(time.Millisecond, strings.Repeat("0123456789", 20)+"\r\n")
	b.FragmentBytes = 0
	out(time.Millisecond, "ci-bot@box:~$ ")
	b.Step(time.Second).Server("ssh.request.exit-status", 1, ssh.Marshal(struct{ S uint32 }{0}))
	b.Step(time.Millisecond).Server("ssh.channel.close", 1, nil)
	b.End("client closed")
	return b, want
}

func TestAsciicastFromTerminalChannel(t *testing.T) {
	b, want := terminalSession()
	var buf bytes.Buffer
	if err := (Protocol{}).Replay(&buf, FormatAsciicast, sessiontest.Seq(b.Frames), protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Scan()
	var h CastHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
		t.Fatalf("header %q: %v", sc.Text(), err)
	}
	if h.Version != 2 || h.Width != 120 || h.Height != 40 || h.Env["TERM"] != "xterm-256color" || h.Title != "ci-bot@box" {
		t.Errorf("header %+v", h)
	}
	var got strings.Builder
	var resizes []string
	last := -1.0
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		ts, code, data := ev[0].(float64), ev[1].(string), ev[2].(string)
		if ts < last {
			t.Errorf("event at %v after one at %v", ts, last)
		}
		last = ts
		switch code {
		case "o":
			got.WriteString(data)
		case "r":
			resizes = append(resizes, data)
			if got.Len() != len("\x1b[1;32mci-bot@box\x1b[0m:~$ echo héllo\r\nhéllo €\r\n") {
				t.Errorf("resize after %d output bytes", got.Len())
			}
		default:
			t.Errorf("event code %q", code)
		}
	}
	if got.String() != string(want) {
		t.Errorf("output differs from the server's data:\n got %q\nwant %q", got.String(), want)
	}
	if strings.Join(resizes, ",") != "100x30" {
		t.Errorf("resizes %v", resizes)
	}
	// The shell request is t=0; the last output is 1.614s after it (see terminalSession).
	if last != 1.614 {
		t.Errorf("last event at %vs", last)
	}
}

func TestAsciicastChannelChoice(t *testing.T) {
	b, _ := terminalSession()
	ch := int64(0)
	var buf bytes.Buffer
	if err := (Protocol{}).Replay(&buf, FormatAsciicast, sessiontest.Seq(b.Frames), protocol.ReplayOptions{Channel: &ch}, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || lines[1] != `[0.001,"o","Linux box\n"]` {
		t.Errorf("exec channel cast:\n%s", buf.String())
	}
	if !strings.Contains(lines[0], `"width":80`) {
		t.Errorf("no pty: want default size, got %s", lines[0])
	}
}

func TestSSHText(t *testing.T) {
	b, _ := terminalSession()
	var buf bytes.Buffer
	if err := (Protocol{}).Replay(&buf, FormatText, sessiontest.Seq(b.Frames), protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"session by ci-bot (https://idp) on target box",
		"channel 0 exec\n$ uname -a\nLinux box\n# channel 0 exit status 0\n",
		"channel 1 shell\n",
		"ci-bot@box:~$ echo héllo\nhéllo €\n" + strings.Repeat("0123456789", 20) + "\nci-bot@box:~$ \n# channel 1 exit status 0\n",
		"session ended: client closed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("escape sequences left in text")
	}
}

func TestTextTerminalAppliesBackspaces(t *testing.T) {
	var buf bytes.Buffer
	tt := &textTerm{w: bufio.NewWriter(&buf)}
	tt.write([]byte("ls -k\b \bl\x1b]0;title\x07 /tmp\r\n"))
	tt.w.Flush()
	if buf.String() != "ls -l /tmp\n" {
		t.Errorf("got %q", buf.String())
	}
}

func TestSSHJSONEvents(t *testing.T) {
	b, _ := terminalSession()
	var buf bytes.Buffer
	if err := (Protocol{}).Replay(&buf, FormatJSON, sessiontest.Seq(b.Frames), protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	var execCmd string
	var inputs int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Request == "exec" {
			execCmd = ev.Command
		}
		if ev.Type == "input" {
			inputs++
		}
		if ev.Type == "open" && ev.Command != "session" {
			t.Errorf("channel type %q", ev.Command)
		}
	}
	if execCmd != "uname -a" || inputs != 1 {
		t.Errorf("exec %q, %d input events", execCmd, inputs)
	}
}
