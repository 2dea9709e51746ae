package sshproxy_test

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

// TestKafkaOutage stops the recorder's Kafka under live sessions: input typed or
// commands run after that never reach the target, the agents are told why, new
// sessions are refused with a clear message, and once Kafka is back sessions
// work again and the interrupted recordings are ended.
func TestKafkaOutage(t *testing.T) {
	k := testenv.PrivateKafka(t)
	g := startGateway(t, gatewayOpts{brokers: k.Brokers(), produceTimeout: 2 * time.Second})
	dir := targetDir(t)
	marker := func(name string) string { return filepath.Join(dir, name) }

	// A: a shell reading commands from stdin, proven live before the outage.
	a := g.goClient("box", g.token("judy", "ops"))
	shell, err := a.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := shell.StdinPipe()
	stdout, _ := shell.StdoutPipe()
	var shellErr lockedBuffer
	shell.Stderr = &shellErr
	if err := shell.Start("bash -s"); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if _, err := stdin.Write([]byte("echo ready\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := lines.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("shell: %q, %v", line, err)
	}
	// B: a connection with a session channel open, no command yet.
	b := g.goClient("box", g.token("ken", "ops"))
	later, err := b.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var laterErr lockedBuffer
	later.Stderr = &laterErr

	k.Stop()

	stdin.Write([]byte("touch " + marker("from-stdin") + "\n"))
	if err := waitErr(shell.Wait, 30*time.Second); err == nil {
		t.Error("shell went on after its input could not be recorded")
	}
	if !strings.Contains(shellErr.String(), "tapline: recording failed") {
		t.Errorf("shell stderr %q does not say why", shellErr.String())
	}
	if err := waitErr(func() error { return later.Run("touch " + marker("from-exec")) }, 30*time.Second); err == nil {
		t.Error("command ran although it could not be recorded")
	}
	_, stderr, code := g.ssh(g.token("leo", "ops"), "box", "", "touch "+marker("from-new-session"))
	if code != 255 || !strings.Contains(stderr, "tapline: recording is unavailable, so new sessions are refused") {
		t.Errorf("new session during the outage: exit %d, stderr %q", code, stderr)
	}
	time.Sleep(time.Second) // anything that slipped through would have landed by now
	for _, m := range []string{"from-stdin", "from-exec", "from-new-session"} {
		if _, err := os.Stat(marker(m)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the unrecorded command ran on the target (stat: %v)", m, err)
		}
	}

	k.Start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, stderr, code := g.ssh(g.token("mia", "ops"), "box", "", "echo back")
		if code == 0 && out == "back\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still refused after Kafka came back: exit %d %q", code, stderr)
		}
		time.Sleep(time.Second)
	}
	// The interrupted recordings end with the failure as reason and a valid
	// signature. The frame that timed out may still have reached Kafka late
	// (a true record of what the agent sent, never forwarded) or be missing,
	// which verification shows as a gap; the frames before it are intact.
	for _, sub := range []string{"judy", "ken"} {
		fs := g.frames.session(bySubject(sub))
		t.Logf("%s: %v", sub, kindsOf(fs))
		end := verifyAcrossGaps(t, g.signer, fs)
		if !strings.HasPrefix(end.Reason, "recording failed") {
			t.Errorf("%s: end reason %q", sub, end.Reason)
		}
	}
}

// verifyAcrossGaps checks every link whose predecessor is present, each frame's
// own hash, and the end's signature.
func verifyAcrossGaps(t *testing.T, pub ed25519.PublicKey, fs []schemas.Frame) *schemas.SessionEnd {
	t.Helper()
	for i, f := range fs {
		prev := schemas.ZeroHash
		if i > 0 {
			prev = fs[i-1].Hash
		}
		if i > 0 && fs[i-1].Seq != f.Seq-1 {
			t.Logf("gap before seq %d", f.Seq)
			prev = f.PrevHash
		}
		if err := checkLink(&f, prev); err != nil {
			t.Fatalf("seq %d: %v", f.Seq, err)
		}
	}
	end := fs[len(fs)-1].End
	if end == nil || schemas.VerifyEnd(pub, fs[0].SessionID, end) != nil {
		t.Fatalf("session end missing or not signed by the gateway: %+v", end)
	}
	return end
}

func waitErr(f func() error, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return nil
	}
}
