package sshproxy

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tapline/tapline/auth"
)

// lengthVerifier rejects every token and remembers the lengths it saw.
type lengthVerifier struct {
	mu      sync.Mutex
	lengths []int
}

func (v *lengthVerifier) Verify(ctx context.Context, raw string) (auth.Identity, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lengths = append(v.lengths, len(raw))
	return auth.Identity{}, auth.ErrInvalidToken
}

// OpenSSH cuts passwords at 1023 bytes; the denial tells the agent so.
func TestOpenSSHCutsLongTokens(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no OpenSSH client")
	}
	v := &lengthVerifier{}
	h := newHarness(t, func(h *harness, o *Options) { o.Verifier = v })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), []byte(strings.Repeat("x", 1500)))
	writeFile(t, filepath.Join(dir, "known_hosts"), []byte(knownhosts.Line([]string{h.addr}, h.srv.HostKey())+"\n"))
	if err := os.WriteFile(filepath.Join(dir, "askpass"), []byte("#!/bin/sh\nexec cat "+filepath.Join(dir, "token")+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(h.addr)
	for _, method := range []string{"password", "keyboard-interactive"} {
		cmd := exec.Command("ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"),
			"-o", "PreferredAuthentications="+method, "-p", port, "box@127.0.0.1", "true")
		cmd.Env = append(os.Environ(), "SSH_ASKPASS="+filepath.Join(dir, "askpass"), "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "HOME="+dir)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "the token is exactly 1023 bytes: OpenSSH cuts longer passwords there") {
			t.Errorf("%s: ssh printed %q", method, out)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.lengths) != 2 || v.lengths[0] != openSSHPasswordLimit || v.lengths[1] != openSSHPasswordLimit {
		t.Errorf("token lengths seen %v", v.lengths)
	}
}

// sshpass types the password only at a prompt that says "password"; with the token
// as its password it must get through keyboard-interactive as well as password
// authentication, not wait at the prompt forever.
func TestSSHPassAnswersTheTokenPrompt(t *testing.T) {
	sshpass, err := exec.LookPath("sshpass")
	if err != nil {
		t.Skip("no sshpass (integration/services.sh up ssh installs it)")
	}
	h := newHarness(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "known_hosts"), []byte(knownhosts.Line([]string{h.addr}, h.srv.HostKey())+"\n"))
	_, port, _ := net.SplitHostPort(h.addr)
	for _, method := range []string{"keyboard-interactive", "password"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, sshpass, "-p", tokenOps, "ssh", "-F", "/dev/null",
			"-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"), "-o", "PreferredAuthentications="+method,
			"-p", port, "box@127.0.0.1", "echo via-sshpass")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%s: sshpass still waiting after 60s: %q", method, out)
		}
		if err != nil || strings.TrimSpace(string(out)) != "via-sshpass" {
			t.Errorf("%s: %v: %q", method, err, out)
		}
	}
}
