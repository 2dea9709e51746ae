package replay

import (
	"reflect"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

type encoder interface{ Encode([]byte) ([]byte, error) }

func wire(m encoder) []byte { return sessiontest.Must(m.Encode(nil)) }

// reflectName is the frame kind of a message: its pgproto3 type name.
func reflectName(m any) string { return reflect.TypeOf(m).Elem().Name() }

// pgSession builds a Postgres session from messages sent in order.
type pgSession struct{ *sessiontest.Builder }

func newPG() pgSession {
	return pgSession{sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: "https://idp", Subject: "alice", Target: "app", ClientAddr: "127.0.0.1:5000"})}
}

func (s pgSession) c(msgs ...encoder) pgSession {
	for _, m := range msgs {
		s.Step(time.Millisecond).Client(reflectName(m), 0, wire(m))
	}
	return s
}

func (s pgSession) s(msgs ...encoder) pgSession {
	for _, m := range msgs {
		s.Step(time.Millisecond).Server(reflectName(m), 0, wire(m))
	}
	return s
}

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
	b.Step(time.Millisecond).Client("ssh.request.pty-req", 1, ssh.Marshal(struct {
		Term                 string
		Cols, Rows, WPx, HPx uint32
		Modes                string
	}{Term: "xterm-256color", Cols: 120, Rows: 40}))
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
	b.Step(500*time.Millisecond).Client("ssh.request.window-change", 1, ssh.Marshal(struct{ Cols, Rows, WPx, HPx uint32 }{Cols: 100, Rows: 30}))
	b.FragmentBytes = 64
	out(time.Millisecond, strings.Repeat("0123456789", 20)+"\r\n")
	b.FragmentBytes = 0
	out(time.Millisecond, "ci-bot@box:~$ ")
	b.Step(time.Second).Server("ssh.request.exit-status", 1, ssh.Marshal(struct{ S uint32 }{0}))
	b.Step(time.Millisecond).Server("ssh.channel.close", 1, nil)
	b.End("client closed")
	return b, want
}
