//go:build chdb

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// Secrets an agent types at password prompts of a real shell behind the gateway
// (a sudo-style prompt, read -s, ssh-keygen -p changing a passphrase, psql), a keystroke
// per frame, pasted whole, and pasted in chunks across frames, are recorded in the
// raw topic and nowhere downstream: no processed topic, no table. Every session
// still verifies. The agent is OpenSSH's ssh with a remote pty (-tt), and Go's SSH
// client, whose writes are one frame each.
func TestPrivacySSH(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	t.Run("openssh", func(t *testing.T) {
		sub := "pia-" + randHex(3)
		token := h.token(t, sub, sshGroup)
		privacyScenario(t, h, h.openSSHShell(t, token), sub, token)
	})
	t.Run("go", func(t *testing.T) {
		sub := "pib-" + randHex(3)
		token := h.token(t, sub, sshGroup)
		privacyScenario(t, h, h.shell(t, token), sub, token)
	})
}

func privacyScenario(t *testing.T, h *harness, term *terminal, sub, token string) {
	sudoPw := h.target.SudoPassword
	if sudoPw == "" {
		t.Fatal("TAPLINE_SSH_SUDO_PASSWORD is not set: run integration/services.sh up ssh")
	}
	apiKey := "sk_" + randHex(8)
	passphrase := "pass-" + randHex(6) + "-phrase"
	awsKey := "AKIA" + strings.ToUpper(randHex(8))
	email := "pia." + randHex(4) + "@example.org"
	keyFile := "/tmp/tapline-e2e-key-" + randHex(4)

	// Real sudo: it prompts "[sudo] password for <user>: " on the terminal and
	// reads with echo off; the target account may run id as root, with its
	// password, asked every time. A wrong password or no prompt fails here.
	term.run("sudo /usr/bin/id", "[sudo] password for "+h.target.User+": ")
	for _, k := range sudoPw { // one keystroke per frame
		term.send(string(k))
	}
	term.send("\n")
	term.wait("uid=0(root)")

	// read -s with a prompt; the key pasted with its Enter in one frame.
	term.run("read -rs -p \"$(printf 'API %s: ' key)\" K; echo; echo \"key-len-${#K}\"", "API key: ")
	term.send(apiKey + "\n")
	term.wait(fmt.Sprintf("key-len-%d", len(apiKey)))

	// ssh-keygen -p: a new passphrase, in two chunks, then again whole, with a
	// mistyped character taken back, then an aborted line (^C).
	term.run("ssh-keygen -q -t ed25519 -N '' -f "+keyFile+" && ssh-keygen -p -f "+keyFile, "(empty for no passphrase): ")
	half := len(passphrase) / 2
	term.send(passphrase[:half])
	term.send(passphrase[half:] + "\n")
	term.wait("Enter same passphrase again: ")
	term.send(passphrase[:3] + "x\x7f" + passphrase[3:] + "\n")
	term.wait("with the new passphrase")
	term.run("rm -f "+keyFile+" "+keyFile+".pub; echo removed", "removed\r\n")
	// psql's own password prompt, against the test Postgres (an md5 login).
	term.run(fmt.Sprintf("%s/psql -X -A -t -P pager=off -h %s -p %d -U %s -d %s -c \"select 'psql-'||'ok'\"",
		h.pg.Bin, h.pg.Host, h.pg.Port, h.pg.MD5User, h.pg.DB), "Password for user "+h.pg.MD5User+": ")
	term.send(h.pg.MD5Password + "\n")
	term.wait("psql-ok\r\n")
	term.run("read -rs -p \"$(printf 'Pass%s: ' word)\" Q; echo \"aborted-${#Q}\"", "Password: ")
	term.send(sudoPw[:4] + "\x03")
	term.wait("$ ")

	// Secrets pasted on a command line in two chunks, split inside the secret.
	term.send("echo " + awsKey[:9])
	term.send(awsKey[9:] + " " + email[:7])
	term.send(email[7:] + "\n")
	term.wait(awsKey + " " + email + "\r\n")
	term.exit()

	sess := h.waitSessions(t, sub, 1)[0]
	secrets := []string{sudoPw, apiKey, passphrase, awsKey, email, h.pg.MD5Password}
	processed := h.processedTopics()
	scans := h.scanTopics(t, append([]string{h.topics.Raw}, processed...), secrets)
	// Recorded: the key typed whole in one frame is in the raw topic (the others
	// were typed in pieces, and the output's frame boundaries are the target's).
	if scans[h.topics.Raw].hits[apiKey] == 0 {
		t.Errorf("%q is not in %s: the session was not recorded as typed", apiKey, h.topics.Raw)
	}
	for _, topic := range processed {
		if scans[topic].records == 0 {
			t.Errorf("%s: no records read", topic)
		}
	}
	h.notDownstream(t, scans, secrets)
	// The typed secrets are counted where they were masked, and the commands around
	// them are intact.
	p := clickhouse.Params{"sid": sess.SessionID, "k": "typed_secret"}
	if n := h.count(t, "SELECT toInt64(count()) FROM commands FINAL WHERE session_id = {sid:String} AND mapContains(masks, {k:String})", p); n < 5 {
		t.Errorf("%d commands record a typed_secret mask; want one per secret line (5 or more)", n)
	}
	var texts []string
	for _, c := range h.commands(t, token, sess.SessionID) {
		texts = append(texts, c.Text)
	}
	if !strings.Contains(strings.Join(texts, "\n"), "ssh-keygen -p -f "+keyFile) {
		t.Errorf("commands %q lack the ssh-keygen line", texts)
	}
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	if rep := h.verify(t, auditor, sess.SessionID); !rep.OK || rep.Masked == 0 {
		t.Errorf("verify: ok=%v masked frames %d problems %v", rep.OK, rep.Masked, rep.Problems)
	}
}

// terminal is an interactive shell with a pty through the gateway.
type terminal struct {
	t     *testing.T
	stdin io.WriteCloser
	out   *syncBuffer
	seen  int          // output before this offset was waited for already
	done  func() error // waits for the shell to exit and closes the connection
}

// shell opens a shell with a pty through the gateway's SSH edge.
func (h *harness) shell(t *testing.T, token string) *terminal {
	t.Helper()
	cl, err := ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: h.target.User + "+" + sshTarget, Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(h.sshHostKey), Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to the gateway: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 40, 200, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	term := &terminal{t: t, out: &syncBuffer{}}
	sess.Stdout, sess.Stderr = term.out, term.out
	if term.stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	term.done = func() error {
		defer cl.Close() // the recorded session is the SSH connection: it ends here
		return sess.Wait()
	}
	if err := sess.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	term.send("PS1='$ '; export PAGER=cat\n")
	term.wait("$ ")
	return term
}

// send writes one frame's worth of keystrokes.
func (term *terminal) send(s string) {
	term.t.Helper()
	if _, err := io.WriteString(term.stdin, s); err != nil {
		term.t.Fatalf("typing %q: %v", s, err)
	}
}

// wait waits until the terminal shows want after what was waited for before.
func (term *terminal) wait(want string) {
	term.t.Helper()
	err := poll(60*time.Second, func() error {
		out := term.out.String()
		if i := strings.Index(out[term.seen:], want); i >= 0 {
			term.seen += i + len(want)
			return nil
		}
		return fmt.Errorf("no %q yet", want)
	})
	if err != nil {
		term.t.Fatalf("%v; the terminal shows %q", err, term.out.String())
	}
}

// run types a command line and waits for want.
func (term *terminal) run(line, want string) {
	term.t.Helper()
	term.send(line + "\n")
	term.wait(want)
}

// exit ends the shell and the connection: the recorded session ends with it.
func (term *terminal) exit() {
	term.t.Helper()
	term.send("exit\n")
	if err := term.done(); err != nil {
		term.t.Fatalf("shell exit: %v", err)
	}
}

// openSSHShell opens a shell through the gateway with OpenSSH's client, a remote
// pty forced (-tt) over piped stdin, the token typed by sshpass.
func (h *harness) openSSHShell(t *testing.T, token string) *terminal {
	t.Helper()
	sshpass, err := exec.LookPath("sshpass")
	if err != nil {
		t.Skip("no sshpass (integration/services.sh up ssh installs it)")
	}
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(knownhosts.Line([]string{h.sshAddr}, h.sshHostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(h.sshAddr)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, sshpass, "-e", "ssh", "-F", "/dev/null", "-tt",
		"-o", "UserKnownHostsFile="+known, "-o", "ConnectTimeout=30", "-p", port,
		h.target.User+"+"+sshTarget+"@"+host)
	cmd.Env = append(os.Environ(), "HOME="+dir, "SSHPASS="+token)
	term := &terminal{t: t, out: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = term.out, term.out
	if term.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	term.done = cmd.Wait
	term.send("PS1='$ '; export PAGER=cat\n")
	term.wait("$ ")
	return term
}

// Secrets written to a remote program's stdin a few bytes at a time (no pty, no
// prompt: an agent piping a file through ssh to cat, which writes it back) are
// cut across frames at every kind of boundary, both ways: each chunk is written
// once cat has echoed the one before, so it is a frame of its own. No byte of
// any of them is in tapline.frames (the session's channel data, put back
// together from the frames table, shows each masked whole in both directions),
// nor any of them in another processed topic or table; every session verifies.
// The agents are Go's SSH client and OpenSSH's ssh reading a pipe.
func TestPrivacySSHChunkedStdin(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "pic-" + randHex(3)
	token := h.token(t, sub, sshGroup)
	secrets := []string{
		"AKIA" + strings.ToUpper(randHex(8)),
		"pic." + randHex(4) + "@example.org",
		"ghp_" + randHex(18),
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi" + randHex(6) + "." + randHex(10),
		"Pw" + randHex(7),
	}
	text := fmt.Sprintf("export AWS_ACCESS_KEY_ID=%s\nmail %s now\nGITHUB_TOKEN=%s set\nAuthorization: Bearer %s\npsql postgres://app:%s@db/app\n",
		secrets[0], secrets[1], secrets[2], secrets[3], secrets[4])
	sizes := []int{1, 2, 3, 5, 7, 4}
	var chunks []string
	for i, k := 0, 0; i < len(text); k++ {
		n := min(sizes[k%len(sizes)], len(text)-i)
		chunks = append(chunks, text[i:i+n])
		i += n
	}
	// paste writes the chunks, each once the one before came back.
	paste := func(stdin io.WriteCloser, out *syncBuffer) {
		t.Helper()
		sent := 0
		for _, c := range chunks {
			if _, err := io.WriteString(stdin, c); err != nil {
				t.Fatalf("writing %q: %v", c, err)
			}
			sent += len(c)
			err := poll(60*time.Second, func() error {
				if n := len(out.String()); n < sent {
					return fmt.Errorf("%d of %d bytes back", n, sent)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%v: cat shows %q", err, out.String())
			}
		}
		stdin.Close()
	}

	// Go's client.
	cl, err := ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: h.target.User + "+" + sshTarget, Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(h.sshHostKey), Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to the gateway: %v", err)
	}
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var goOut syncBuffer
	sess.Stdout, sess.Stderr = &goOut, &goOut
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	paste(stdin, &goOut)
	if err := sess.Wait(); err != nil {
		t.Fatalf("cat: %v", err)
	}
	cl.Close()

	// OpenSSH's ssh, its stdin a pipe.
	tool := h.openSSH(t, token)
	cmd := tool.command(t, "ssh", "-T", tool.login(), "cat")
	var sshOut syncBuffer
	cmd.Stdout = &sshOut
	pipe, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	paste(pipe, &sshOut)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ssh: %v: %s", err, sshOut.String())
	}
	if sshOut.String() != text || goOut.String() != text {
		t.Fatalf("cat gave back %q and %q", goOut.String(), sshOut.String())
	}

	sessions := h.waitSessions(t, sub, 2)
	auditor := h.token(t, "e2e-privacy-auditor", auditors)
	for _, s := range sessions {
		stored := h.frames(t, s.SessionID)
		for _, dir := range []schemas.Direction{schemas.Client, schemas.Server} {
			var data []byte
			frames := 0
			for _, f := range stored {
				if f.Kind == "ssh.channel.data" && f.Direction == dir {
					data = append(data, f.Payload...)
					frames++
				}
			}
			if len(data) != len(text) {
				t.Fatalf("session %s: %d bytes of %s data in %d frames, want %d", s.SessionID, len(data), dir, frames, len(text))
			}
			if frames < len(chunks)/2 {
				t.Errorf("session %s: %s data in %d frames: the chunks were not cut into frames", s.SessionID, dir, frames)
			}
			for _, secret := range secrets {
				at := strings.Index(text, secret)
				if got := string(data[at : at+len(secret)]); got != strings.Repeat("*", len(secret)) {
					t.Errorf("session %s, %s data in %d frames: %q is stored as %q", s.SessionID, dir, frames, secret, got)
				}
			}
		}
		if rep := h.verify(t, auditor, s.SessionID); !rep.OK || rep.Masked == 0 {
			t.Errorf("session %s: verify ok=%v masked frames %d problems %v", s.SessionID, rep.OK, rep.Masked, rep.Problems)
		}
	}
	h.notDownstream(t, h.scanTopics(t, h.processedTopics(), secrets), secrets)
}
