package sshproxy_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
)

func TestOpenSSHInteractivePtyWithWindowChange(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	term, err := openTerminal(24, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	// -tt: a pty even though the test's own stdin is not a terminal; escape
	// character off and LogLevel ERROR so that everything on the terminal came
	// from the target.
	args := g.sshArgs("-tt", "-e", "none", "-o", "LogLevel=ERROR", "-p", g.port, "box@127.0.0.1")
	cmd := g.command(g.token("erin", "ops"), "ssh", args...)
	term.attach(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.closeSlave()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	if err := term.waitRaw(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	step := func(line, want string) {
		t.Helper()
		if err := term.typeLine(line); err != nil {
			t.Fatal(err)
		}
		if err := term.waitFor(want, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Arithmetic, so that the echo of the typed line does not match.
	step("stty size; echo mark-$((40+2))", "mark-42")
	if !strings.Contains(term.output(), "24 80") {
		t.Fatalf("initial size not 24x80: %q", term.output())
	}
	if err := term.resize(30, 100); err != nil {
		t.Fatal(err)
	}
	// The resize (a request) and the next keystrokes (data) travel separately;
	// ask until the shell sees the new size.
	for i := 0; ; i++ {
		step(fmt.Sprintf("stty size; echo mark-$((%d+1000))", i), fmt.Sprintf("mark-%d", i+1000))
		if strings.Contains(term.output(), "30 100") {
			break
		}
		if i == 20 {
			t.Fatalf("window change never reached the shell: %q", term.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := term.typeLine("exit 0"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ssh: %v; terminal: %q", err, term.output())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("ssh did not exit")
	}
	if err := term.drained(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	fs := g.frames.session(bySubject("erin"))
	verifyChain(t, g.signer, fs)
	pty := firstOf(t, fs, "ssh.request.pty-req")
	var p struct {
		Term                 string
		Cols, Rows, PxW, PxH uint32
		Modes                string
	}
	if err := ssh.Unmarshal(pty.Payload, &p); err != nil || p.Cols != 80 || p.Rows != 24 || p.Term == "" {
		t.Errorf("pty-req payload → %+v, %v", p, err)
	}
	var w struct{ Cols, Rows, PxW, PxH uint32 }
	winch := firstOf(t, fs, "ssh.request.window-change")
	if err := ssh.Unmarshal(winch.Payload, &w); err != nil || w.Cols != 100 || w.Rows != 30 || winch.Channel != pty.Channel {
		t.Errorf("window-change payload → %+v, %v", w, err)
	}
	firstOf(t, fs, "ssh.request.shell")
	recorded := stream(fs, "ssh.channel.data", schemas.Server, pty.Channel)
	if received := term.output(); string(recorded) != received {
		t.Errorf("recorded SERVER data (%d bytes) differs from what the client received (%d bytes)\nrecorded: %q\nreceived: %q",
			len(recorded), len(received), recorded, received)
	}
	if typed := stream(fs, "ssh.channel.data", schemas.Client, pty.Channel); !bytes.Contains(typed, []byte("stty size; echo mark-$((40+2))\r")) {
		t.Errorf("recorded CLIENT data %q lacks the typed line", typed)
	}
}

func TestOpenSSHKeepaliveRelayed(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	// The client gives up after 2 unanswered keepalives; the command outlives that.
	stdout, stderr, code := g.ssh(g.token("frank", "ops"), "box", "",
		"-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "sleep 4; echo survived")
	if stdout != "survived\n" || code != 0 {
		t.Fatalf("stdout %q stderr %q exit %d", stdout, stderr, code)
	}
	fs := g.frames.session(bySubject("frank"))
	verifyChain(t, g.signer, fs)
	req := firstOf(t, fs, "ssh.global.keepalive@openssh.com")
	reply := firstOf(t, fs, "ssh.reply.keepalive@openssh.com")
	// sshd answers keepalives with SSH_MSG_REQUEST_FAILURE (82): that it is
	// recorded as the reply shows the reply came from the target.
	if req.Direction != schemas.Client || reply.Direction != schemas.Server || !bytes.Equal(reply.Payload, []byte{82}) {
		t.Errorf("request %+v reply %+v", req, reply)
	}
}

func TestSeveralChannelsOneConnection(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	c := g.goClient("box", g.token("grace", "ops"))
	const n = 4
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.NewSession()
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			out, err := s.CombinedOutput(fmt.Sprintf("echo start-%d; sleep 0.5; echo end-%d", i, i))
			if err != nil {
				t.Error(err)
			}
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	for i, out := range outs {
		if want := fmt.Sprintf("start-%d\nend-%d\n", i, i); out != want {
			t.Errorf("session %d: %q, want %q", i, out, want)
		}
	}
	c.Close()
	fs := g.frames.session(bySubject("grace"))
	verifyChain(t, g.signer, fs)
	channels := map[int64]string{}
	for _, f := range fs {
		if f.Kind == "ssh.channel.data" && f.Direction == schemas.Server {
			channels[f.Channel] += string(f.Payload)
		}
	}
	if len(channels) != n {
		t.Fatalf("output recorded on %d channels, want %d: %v", len(channels), n, channels)
	}
	for ch, out := range channels {
		if !strings.HasPrefix(out, "start-") || !strings.Contains(out, "end-") {
			t.Errorf("channel %d recorded %q", ch, out)
		}
	}
}

func TestPortForwardingPerTarget(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	echo := echoServer(t)

	denied := g.goClient("box", g.token("heidi", "ops"))
	_, err := denied.Dial("tcp", echo)
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
		t.Fatalf("forwarding on box: %v, want administratively prohibited", err)
	}
	if _, err := denied.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Fatal("remote forwarding accepted on box")
	}
	s, _ := denied.NewSession()
	if ok, _ := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok {
		t.Fatal("agent forwarding accepted on box")
	}
	denied.Close()

	allowed := g.goClient("fwd", g.token("ivan", "ops"))
	conn, err := allowed.Dial("tcp", echo)
	if err != nil {
		t.Fatalf("forwarding on fwd: %v", err)
	}
	io.WriteString(conn, "ping through sshd\n")
	buf := make([]byte, 18)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping through sshd\n" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	conn.Close()
	allowed.Close()

	fs := g.frames.session(bySubject("heidi"))
	verifyChain(t, g.signer, fs)
	open := firstOf(t, fs, "ssh.channel.open")
	if !bytes.HasPrefix(open.Payload, sshString("direct-tcpip")) || firstOf(t, fs, "ssh.channel.open-failure").Channel != open.Channel {
		t.Errorf("refused forward not recorded: %v", kindsOf(fs))
	}
	firstOf(t, fs, "ssh.global.tcpip-forward")
	firstOf(t, fs, "ssh.request.auth-agent-req@openssh.com")

	fs = g.frames.session(bySubject("ivan"))
	verifyChain(t, g.signer, fs)
	open = firstOf(t, fs, "ssh.channel.open")
	if got := string(stream(fs, "ssh.channel.data", schemas.Client, open.Channel)); got != "ping through sshd\n" {
		t.Errorf("forwarded CLIENT data %q", got)
	}
	if got := string(stream(fs, "ssh.channel.data", schemas.Server, open.Channel)); got != "ping through sshd\n" {
		t.Errorf("forwarded SERVER data %q", got)
	}
}

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func sshString(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// TestSlowAgentHoldsBackTheTarget: an agent that does not read makes the real
// sshd's command block on its output after a few windows' worth, instead of the
// gateway reading on and buffering.
func TestSlowAgentHoldsBackTheTarget(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	dir := targetDir(t)
	progress := dir + "/progress"
	c := g.goClient("box", g.token("olga", "ops"))
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	const chunk, chunks = 256 << 10, 256 // 64 MiB
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do head -c %d /dev/zero; i=$((i+1)); echo $i > %s; done`, chunks, chunk, progress)
	if err := s.Start(script); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	written := readCount(t, progress) * chunk
	// Windows on the way (sshd's, the gateway's two, the client's) and buffers:
	// a few MiB, far from the 64 MiB the command wants to write.
	if written > 16<<20 {
		t.Fatalf("the target wrote %d MiB to an agent that reads nothing", written>>20)
	}
	t.Logf("target blocked after %d KiB", written>>10)
	n, err := io.Copy(io.Discard, out)
	if err != nil || n != chunks*chunk {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
}

func readCount(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// TestSlowTargetHoldsBackTheAgent: a command that reads no stdin makes the agent's
// writes block after a few windows' worth.
func TestSlowTargetHoldsBackTheAgent(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	c := g.goClient("box", g.token("pavel", "ops"))
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	if err := s.Start("sleep 3; head -c 1 >/dev/null"); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			n, err := in.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(2 * time.Second)
	if w := written.Load(); w > 16<<20 || w == 0 {
		t.Fatalf("agent wrote %d KiB into a command that reads nothing", w>>10)
	}
	t.Logf("agent blocked after %d KiB", written.Load()>>10)
	s.Close()
}
