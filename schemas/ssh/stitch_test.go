package ssh

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

type sshSession struct {
	rec  *sessiontest.Session
	st   Stitcher
	cmds []schemas.Command
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newSSH() *sshSession {
	return &sshSession{rec: sessiontest.Start(schemas.SSH, schemas.SessionStart{Subject: "ci", Target: "box"}, sessiontest.NewKey(2), t0)}
}

func (s *sshSession) add(dir schemas.Direction, kind string, ch int64, payload []byte) int64 {
	f := s.rec.Add(dir, kind, ch, payload)
	s.cmds = append(s.cmds, s.st.Frame(f, protocol.Limits{})...)
	return f.Seq
}

func (s *sshSession) take() []schemas.Command {
	c := s.cmds
	s.cmds = nil
	return c
}

func sshString(v string) []byte { return xssh.Marshal(&struct{ V string }{v}) }

func exitStatus(code uint32) []byte { return binary.BigEndian.AppendUint32(nil, code) }

func TestSSHShellLines(t *testing.T) {
	s := newSSH()
	s.add(schemas.Client, "ssh.channel.open", 0, sshString("session"))
	s.add(schemas.Client, "ssh.request.pty-req", 0, xssh.Marshal(&struct {
		Term               string
		Cols, Rows, PW, PH uint32
		Modes              string
	}{"xterm-256color", 120, 40, 0, 0, ""}))
	shell := s.add(schemas.Client, "ssh.request.shell", 0, nil)
	s.add(schemas.Server, "ssh.channel.data", 0, []byte("ci@box:~$ "))

	// One line typed in one go.
	ls := s.add(schemas.Client, "ssh.channel.data", 0, []byte("ls -la\r"))
	// Keystroke by keystroke, with a typo fixed by backspace.
	echo := s.add(schemas.Client, "ssh.channel.data", 0, []byte("ech"))
	for _, k := range []string{"o hx", "\x7f", "i"} {
		s.add(schemas.Client, "ssh.channel.data", 0, []byte(k))
	}
	echoEnd := s.add(schemas.Client, "ssh.channel.data", 0, []byte("\r"))
	// A paste of two lines, then a line split across frames after another line.
	paste := s.add(schemas.Client, "ssh.channel.data", 0, []byte("pwd\r\nwhoami\r"))
	split := s.add(schemas.Client, "ssh.channel.data", 0, []byte("id\rhost"))
	splitEnd := s.add(schemas.Client, "ssh.channel.data", 0, []byte("name\r"))
	// History recall: the command is only known to the remote shell.
	recall := s.add(schemas.Client, "ssh.channel.data", 0, []byte("\x1b[A\r"))
	// ^C abandons a line; ^U clears one.
	s.add(schemas.Client, "ssh.channel.data", 0, []byte("rm -rf /tmp/x\x03"))
	cleared := s.add(schemas.Client, "ssh.channel.data", 0, []byte("wrong\x15date\r"))
	exit := s.add(schemas.Server, "ssh.request.exit-status", 0, exitStatus(0))
	s.add(schemas.Server, "ssh.channel.close", 0, nil)

	type line struct {
		seq, end int64
		kind     string
		text     string
		status   string
		params   []string
	}
	var got []line
	for _, c := range s.take() {
		got = append(got, line{c.CommandSeq, c.SeqEnd, c.Kind, c.Text, c.Status, c.Params})
	}
	want := []line{
		{ls, ls, "shell", "ls -la", protocol.StatusOK, nil},
		{echo, echoEnd, "shell", "echo hi", protocol.StatusOK, []string{`"echo hx\x7fi\r"`}},
		{paste, paste, "shell", "pwd\nwhoami", protocol.StatusOK, nil},
		{split, split, "shell", "id", protocol.StatusOK, nil},
		{splitEnd, splitEnd, "shell", "hostname", protocol.StatusOK, nil},
		{recall, recall, "shell", "", protocol.StatusOK, []string{`"\x1b[A\r"`}},
		{recall + 1, recall + 1, "shell", "rm -rf /tmp/x", protocol.StatusCancelled, nil},
		{cleared, cleared, "shell", "date", protocol.StatusOK, []string{`"wrong\x15date\r"`}},
		{shell, exit, "shell.session", "interactive shell (pty xterm-256color 120x40)", protocol.StatusOK, nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	seen := map[int64]bool{}
	for _, l := range got {
		if seen[l.seq] {
			t.Errorf("two commands share seq %d", l.seq)
		}
		seen[l.seq] = true
	}
}

func TestSSHExecSubsystemForward(t *testing.T) {
	s := newSSH()
	s.add(schemas.Client, "ssh.channel.open", 1, sshString("session"))
	exec := s.add(schemas.Client, "ssh.request.exec", 1, sshString("systemctl restart app"))
	s.add(schemas.Server, "ssh.channel.data", 1, []byte("Job failed\n"))
	end := s.add(schemas.Server, "ssh.request.exit-status", 1, exitStatus(1))
	s.add(schemas.Server, "ssh.channel.close", 1, nil)
	c := one(t, s.take())
	if c.Kind != "exec" || c.Text != "systemctl restart app" || c.CommandSeq != exec || c.SeqEnd != end ||
		c.Status != protocol.StatusError || c.ExitStatus == nil || *c.ExitStatus != 1 || c.Error != "exit status 1" || c.Channel != 1 {
		t.Errorf("%+v", c)
	}

	s.add(schemas.Client, "ssh.channel.open", 2, sshString("session"))
	s.add(schemas.Client, "ssh.request.exec", 2, sshString("sleep 100"))
	s.add(schemas.Server, "ssh.request.exit-signal", 2, xssh.Marshal(&struct {
		Signal     string
		CoreDumped bool
		Msg, Lang  string
	}{"KILL", false, "", ""}))
	if c := one(t, s.take()); c.Status != protocol.StatusError || c.Error != "killed by signal KILL" {
		t.Errorf("%+v", c)
	}

	s.add(schemas.Client, "ssh.channel.open", 3, sshString("session"))
	s.add(schemas.Client, "ssh.request.subsystem", 3, sshString("sftp"))
	s.add(schemas.Client, "ssh.channel.close", 3, nil)
	if c := one(t, s.take()); c.Kind != "subsystem" || c.Text != "sftp" || c.Status != protocol.StatusOK {
		t.Errorf("%+v", c)
	}

	open := append(sshString("direct-tcpip"), xssh.Marshal(&struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{"db.internal", 5432, "127.0.0.1", 50000})...)
	s.add(schemas.Client, "ssh.channel.open", 4, open)
	if c := one(t, s.take()); c.Kind != "forward" || c.Text != "direct-tcpip to db.internal:5432 from 127.0.0.1:50000" {
		t.Errorf("%+v", c)
	}

	// A command still running when the session ends.
	s.add(schemas.Client, "ssh.channel.open", 5, sshString("session"))
	s.add(schemas.Client, "ssh.request.exec", 5, sshString("tail -f /var/log/syslog"))
	end5 := s.rec.End("client closed")
	if c := one(t, s.st.Flush(end5, "session ended")); c.Status != protocol.StatusIncomplete || c.Error != "session ended" {
		t.Errorf("%+v", c)
	}
}

func one(t *testing.T, cmds []schemas.Command) schemas.Command {
	t.Helper()
	if len(cmds) != 1 {
		t.Fatalf("want 1 command, got %d: %+v", len(cmds), cmds)
	}
	return cmds[0]
}
