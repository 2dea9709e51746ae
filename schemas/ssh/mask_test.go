package ssh

import (
	"bytes"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// plainRules mask nothing themselves: what is masked here is the conversation's doing.
type plainRules struct{}

func (plainRules) Text(b []byte, _ protocol.Style, _ protocol.Counts) []byte { return b }
func (plainRules) Column(string) bool                                        { return false }
func (plainRules) Param(int) bool                                            { return false }
func (plainRules) Header(string) bool                                        { return false }
func (plainRules) JSONField(string) bool                                     { return false }

// step is one frame of a scripted session: who sends it, what, and how long after
// the previous frame.
type step struct {
	dir  schemas.Direction
	data string
	wait time.Duration
}

func srv(s string) step                       { return step{dir: schemas.Server, data: s} }
func key(s string) step                       { return step{dir: schemas.Client, data: s} }
func keyAfter(d time.Duration, s string) step { return step{dir: schemas.Client, data: s, wait: d} }

// run plays steps on channel 0 of a new conversation (with a pty unless exec), as
// the processor does: mask, then stitch the masked frame. It returns what the
// agent's frames became, the typed_secret count and the stitched commands.
func run(t *testing.T, pty bool, steps ...step) (typed string, secrets int64, cmds []schemas.Command) {
	t.Helper()
	c := &Conversation{}
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	seq := int64(0)
	feed := func(dir schemas.Direction, kind string, p []byte) *schemas.Frame {
		seq++
		f := &schemas.Frame{SessionID: "s", Seq: seq, Protocol: schemas.SSH, Kind: kind, Direction: dir, TS: ts, Payload: p, Final: true}
		counts := protocol.Counts{}
		if len(p) > 0 {
			f.Payload = c.Mask(f, plainRules{}, counts)
		}
		if len(counts) > 0 {
			f.Masks = counts
		}
		secrets += counts[MaskTypedSecret]
		cmds = append(cmds, c.Stitch(f, protocol.Limits{})...)
		return f
	}
	feed(schemas.Client, ChannelOpen, xssh.Marshal(&struct{ T string }{"session"}))
	if pty {
		feed(schemas.Client, RequestPTY, xssh.Marshal(&struct {
			Term               string
			Cols, Rows, PW, PH uint32
			Modes              string
		}{"xterm", 80, 24, 0, 0, ""}))
		feed(schemas.Client, RequestShell, nil)
	} else {
		feed(schemas.Client, RequestExec, xssh.Marshal(&struct{ C string }{"cat"}))
	}
	var out bytes.Buffer
	for _, s := range steps {
		ts = ts.Add(time.Millisecond + s.wait)
		f := feed(s.dir, ChannelData, []byte(s.data))
		if s.dir == schemas.Client {
			out.Write(f.Payload)
		}
	}
	return out.String(), secrets, cmds
}

func TestTypedSecrets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   []step
		secrets []string // must not appear in what the agent's frames became
		visible []string // must still appear
	}{
		{"sudo, a keystroke per frame", []step{srv("$ "), key("sudo -i\r"), srv("\r\n[sudo] password for ci: "),
			key("H"), key("Q"), key("nter2"), key("\r"), srv("\r\n# "), key("id\r")},
			[]string{"H", "Q", "nter2"}, []string{"sudo -i\r", "id\r"}},
		{"sudo with escapes around the prompt", []step{srv("\x1b[1m[sudo] password for ci: \x1b[0m"), key("hunter2\r")},
			[]string{"hunter2"}, nil},
		{"read -s", []step{srv("$ "), key("read -s -p 'API key: ' K\r"), srv("\r\nAPI key: "), key("sk_live_abc\r"), srv("\r\n$ ")},
			[]string{"sk_live_abc"}, []string{"read -s"}},
		{"passwd", []step{srv("Current password: "), key("old-Pw1\r"), srv("\r\nNew password: "), key("new-Pw2\r"),
			srv("\r\nRetype new password: "), key("new-Pw2\r"), srv("\r\npasswd: password updated successfully\r\n$ "), key("ls\r")},
			[]string{"old-Pw1", "new-Pw2"}, []string{"ls\r"}},
		{"ssh-keygen -p", []step{srv("Enter old passphrase: "), key("correct horse\r"), srv("\r\nEnter new passphrase (empty for no passphrase): "),
			key("battery staple\r"), srv("\r\nEnter same passphrase again: "), key("battery staple\r")},
			[]string{"correct horse", "battery staple"}, nil},
		{"psql password prompt", []step{srv("Password for user app: "), key("s3cr3t-db\r"), srv("\r\npsql (16.2)\r\napp=> "), key("select 1;\r")},
			[]string{"s3cr3t-db"}, []string{"select 1;"}},
		{"PIN and verification code", []step{srv("Enter PIN: "), key("123456\r"), srv("\r\nVerification code: "), key("987654\r")},
			[]string{"123456", "987654"}, nil},
		{"pasted in one frame with what follows", []step{srv("Password: "), key("hunter2\recho done\r")},
			[]string{"hunter2"}, []string{"echo done\r"}},
		{"backspace editing", []step{srv("Password: "), key("hunx"), key("\x7f"), key("ter2\r")},
			[]string{"hun", "ter2", "x"}, nil},
		{"Ctrl-C abandons the secret, the next line is a command", []step{srv("[sudo] password for ci: "), key("hunt\x03"),
			srv("^C\r\n$ "), key("whoami\r")},
			[]string{"hunt"}, []string{"\x03", "whoami\r"}},
		{"Ctrl-C and a command in the same frame", []step{srv("Password: "), key("hunt\x03uptime\r")},
			[]string{"hunt"}, []string{"uptime\r"}},
		{"no prompt, the terminal does not echo", []step{srv("$ "), key("stty -echo; cat >/dev/null\r"), srv("\r\n"),
			key("x"), keyAfter(time.Second, "ylophone-secret\r")},
			[]string{"ylophone-secret"}, []string{"stty -echo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typed, n, _ := run(t, true, tc.steps...)
			for _, s := range tc.secrets {
				if strings.Contains(typed, s) {
					t.Errorf("typed %q leaks %q", typed, s)
				}
			}
			for _, s := range tc.visible {
				if !strings.Contains(typed, s) {
					t.Errorf("typed %q lost %q", typed, s)
				}
			}
			if n == 0 {
				t.Error("no typed_secret counted")
			}
		})
	}
}

func TestTypedSecretsLeaveOrdinaryTypingAlone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pty   bool
		steps []step
	}{
		{"slow typing that the terminal echoes", true, []step{srv("$ "), key("l"), srv("l"), keyAfter(2*time.Second, "s"), srv("s"), keyAfter(time.Second, "\r")}},
		{"a command that mentions a password", true, []step{srv("$ "), key("grep -r password: /etc/app\r"), srv("\r\n/etc/app/conf: password: x\r\n$ "), key("ls\r")}},
		{"stdin of a command without a terminal", false, []step{key("line one\n"), keyAfter(5*time.Second, "line two\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typed, n, _ := run(t, tc.pty, tc.steps...)
			if n != 0 || strings.Contains(typed, "*") {
				t.Errorf("masked %d lines of ordinary typing: %q", n, typed)
			}
		})
	}
}

// The stitched line of a typed secret carries no secret and the count; the next
// line is an ordinary command.
func TestTypedSecretCommands(t *testing.T) {
	_, _, cmds := run(t, true, srv("[sudo] password for ci: "), key("hun"), key("ter2"), key("\r"), srv("\r\n# "), key("id\r"))
	var texts []string
	for _, c := range cmds {
		texts = append(texts, c.Text)
		if strings.Contains(c.Text, "hun") || strings.Contains(c.Text, "ter2") {
			t.Errorf("command %q leaks the password", c.Text)
		}
	}
	if len(cmds) != 2 || cmds[0].Text != "*******" || cmds[0].Masks[MaskTypedSecret] != 2 || cmds[1].Text != "id" {
		t.Errorf("commands %q, masks %v", texts, cmds[0].Masks)
	}
}

// The window keeps the BEGIN line of a private key block still open, whole, where
// ever the cut falls, and nothing else beyond WindowBytes.
func TestWindowKeepsAnOpenKeyBlock(t *testing.T) {
	begin := "-----BEGIN OPENSSH PRIVATE KEY-----\n"
	body := strings.Repeat("*", WindowBytes)
	for pre := 0; pre < len(begin)+8; pre++ {
		w := window([]byte(strings.Repeat("x", pre)+begin), []byte(body[:WindowBytes-pre/2]))
		if !bytes.Contains(w, []byte(begin)) {
			t.Fatalf("prefix %d: BEGIN line lost: %q", pre, w[:60])
		}
		if len(w) > WindowBytes+len(begin) {
			t.Fatalf("prefix %d: window of %d bytes", pre, len(w))
		}
	}
	closed := window([]byte(begin+"***\n-----END OPENSSH PRIVATE KEY-----\n"), []byte(body))
	if bytes.Contains(closed, []byte("BEGIN")) || len(closed) != WindowBytes {
		t.Errorf("a closed block is kept: %d bytes", len(closed))
	}
}
