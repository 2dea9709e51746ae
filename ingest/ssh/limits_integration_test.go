package sshproxy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// OpenSSH through the real gateway: a command still running when the token
// expires is cut off with the reason on stderr, and the verified recording ends
// with token_expired.
func TestOpenSSHSessionEndsAtTokenExpiry(t *testing.T) {
	g := startGateway(t, gatewayOpts{clockSkew: "1s"})
	tok, err := g.issuer.Mint("erin", []string{"ops"}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := g.ssh(tok, "box", "", "sleep 45")
	if code == 0 || !strings.Contains(stderr, "token expired") {
		t.Fatalf("ssh across the token's expiry: exit %d, stderr %q", code, stderr)
	}
	fs := g.frames.session(bySubject("erin"))
	if end := verifyChain(t, g.signer, fs); end.Reason != "token_expired" {
		t.Fatalf("end reason %q, want token_expired", end.Reason)
	}
}

// Channels over limits.max_channels_per_connection fail to open with "resource
// shortage", and the failure is in the recording.
func TestChannelLimitThroughGateway(t *testing.T) {
	g := startGateway(t, gatewayOpts{limits: "{max_channels_per_connection: 1}"})
	c := g.goClient("box", g.token("frank", "ops"))
	first, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.NewSession()
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage {
		t.Fatalf("second channel: %v, want resource shortage", err)
	}
	first.Close()
	c.Close()
	fs := g.frames.session(bySubject("frank"))
	verifyChain(t, g.signer, fs)
	found := false
	for _, f := range fs {
		if f.Kind == "ssh.channel.open-failure" && strings.Contains(string(f.Payload), "too many channels") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no recorded open failure for the refused channel; kinds %v", kindsOf(fs))
	}
}
