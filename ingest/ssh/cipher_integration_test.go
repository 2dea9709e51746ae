package sshproxy_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// sshVerbose runs `ssh -v [opts] box@gateway true` and returns stderr and
// whether it succeeded.
func (g *itGateway) sshVerbose(opts ...string) (string, bool) {
	g.t.Helper()
	args := append(g.sshArgs(append([]string{"-v", "-p", g.port}, opts...)...), "box@127.0.0.1", "true")
	cmd := g.command(g.token("alice", "ops"), "ssh", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err == nil
}

// OpenSSH's own preference, with no options, lands on AES-GCM: the gateway does
// not offer OpenSSH the ciphers that cost it most (ChaCha20 in plain Go, AES-CTR
// with HMAC-SHA-256 over every byte), and OpenSSH insisting on them gets its own
// error, until ssh.ciphers lists them. Other clients are offered CTR too.
func TestOpenSSHCipherChoice(t *testing.T) {
	if !cpu.X86.HasAES && !cpu.ARM64.HasAES {
		t.Skip("no AES instructions: the gateway keeps the SSH library's default ciphers")
	}
	g := startGateway(t, gatewayOpts{})
	out, ok := g.sshVerbose()
	if !ok {
		t.Fatalf("default ssh failed:\n%s", out)
	}
	for _, dir := range []string{"server->client", "client->server"} {
		if want := "kex: " + dir + " cipher: aes128-gcm@openssh.com"; !strings.Contains(out, want) {
			t.Errorf("negotiation without %q:\n%s", want, out)
		}
	}

	out, ok = g.sshVerbose("-c", "aes128-ctr")
	if ok || !strings.Contains(out, "no matching cipher found") {
		t.Fatalf("OpenSSH limited to CTR was not refused with OpenSSH's error (ok %v):\n%s", ok, out)
	}

	// A client that is not OpenSSH may speak only CTR (Paramiko before 3.5):
	// it gets the compatible offer. Here the Go client, limited to CTR, runs a
	// command through the gateway.
	c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User: "box", Auth: []ssh.AuthMethod{ssh.Password(g.token("alice", "ops"))},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey), Timeout: 10 * time.Second,
		Config: ssh.Config{Ciphers: []string{ssh.CipherAES128CTR}},
	})
	if err != nil {
		t.Fatalf("a CTR-only Go client: %v", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sess.Output("echo ctr"); err != nil || string(got) != "ctr\n" {
		t.Fatalf("command over CTR: %q %v", got, err)
	}

	g = startGateway(t, gatewayOpts{ciphers: "[aes128-gcm@openssh.com, aes128-ctr]"})
	out, ok = g.sshVerbose("-c", "aes128-ctr")
	if !ok || !strings.Contains(out, "kex: client->server cipher: aes128-ctr") {
		t.Fatalf("ssh.ciphers [.., aes128-ctr] did not admit a CTR-only client (ok %v):\n%s", ok, out)
	}
}
