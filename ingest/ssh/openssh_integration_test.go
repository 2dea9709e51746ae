package sshproxy_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
)

func TestOpenSSHExec(t *testing.T) {
	g := startGateway(t, gatewayOpts{})

	stdout, stderr, code := g.ssh(g.token("alice", "ops"), "box", "", "echo out; echo err >&2; exit 3")
	if stdout != "out\n" || stderr != "err\n" || code != 3 {
		t.Fatalf("stdout %q stderr %q exit %d", stdout, stderr, code)
	}
	fs := g.frames.session(bySubject("alice"))
	end := verifyChain(t, g.signer, fs)
	start := fs[0].Start
	if fs[0].Kind != schemas.KindSessionStart || start.Target != "box" || start.TargetAddr != sshTarget(t).Addr ||
		!strings.HasPrefix(start.Params["client_version"], "SSH-2.0-OpenSSH") || start.Groups[0] != "ops" {
		t.Errorf("session.start %+v", start)
	}
	exec := firstOf(t, fs, "ssh.request.exec")
	if exec.Direction != schemas.Client || string(exec.Payload) != string(ssh.Marshal(struct{ C string }{"echo out; echo err >&2; exit 3"})) {
		t.Errorf("exec frame %+v", exec)
	}
	ch := exec.Channel
	if got := string(stream(fs, "ssh.channel.data", schemas.Server, ch)); got != "out\n" {
		t.Errorf("recorded stdout %q", got)
	}
	if got := string(stream(fs, "ssh.channel.extended-data", schemas.Server, ch)); got != "err\n" {
		t.Errorf("recorded stderr %q", got)
	}
	if st := firstOf(t, fs, "ssh.request.exit-status"); binary.BigEndian.Uint32(st.Payload) != 3 || st.Channel != ch {
		t.Errorf("exit-status frame %+v", st)
	}
	if end.Reason != "agent disconnected" {
		t.Errorf("end reason %q", end.Reason)
	}
}

func TestOpenSSHStdinReachesCommand(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	// OpenSSH sends stdin right behind the exec request; sshd drops session data
	// that arrives before it, so this checks the ordering through the gateway.
	stdout, stderr, code := g.ssh(g.token("alice", "ops"), "box", "hello tapline\n", "tr a-z A-Z")
	if stdout != "HELLO TAPLINE\n" || code != 0 {
		t.Fatalf("stdout %q stderr %q exit %d", stdout, stderr, code)
	}
	fs := g.frames.session(bySubject("alice"))
	verifyChain(t, g.signer, fs)
	ch := firstOf(t, fs, "ssh.request.exec").Channel
	if got := string(stream(fs, "ssh.channel.data", schemas.Client, ch)); got != "hello tapline\n" {
		t.Errorf("recorded stdin %q", got)
	}
	if firstOf(t, fs, "ssh.channel.eof").Direction != schemas.Client {
		t.Error("agent's EOF not recorded first")
	}
}

func TestOpenSSHRefusals(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	alice := g.token("alice", "ops")
	forged := alice[:len(alice)-4] + "AAAA"
	for _, tc := range []struct {
		name, user, token, subject, want string
		denied                           bool
	}{
		{"bad token", "box", forged, "", "invalid token", true},
		{"wrong group", "box", g.token("bob", "dev"), "bob", `target "box" requires membership in one of [ops]`, true},
		{"unknown target", "nosuch", g.token("carol", "ops"), "carol", `unknown target "nosuch"`, true},
		{"unknown host key upstream", "stranger", g.token("dave", "ops"), "dave", "presented a host key that is not in", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := g.ssh(tc.token, tc.user, "", "touch /tmp/should-not-exist")
			if code != 255 || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d stdout %q stderr %q; want refusal mentioning %q", code, stdout, stderr, tc.want)
			}
			t.Logf("ssh stderr:\n%s", stderr)
			fs := g.frames.session(func(f schemas.Frame) bool {
				return f.Start != nil && f.Start.Params["user"] == tc.user && f.Start.Subject == tc.subject
			})
			end := verifyChain(t, g.signer, fs)
			if tc.denied {
				if fs[0].Kind != schemas.KindSessionDenied || !strings.Contains(fs[0].Denial, tc.want) || len(fs) != 2 {
					t.Fatalf("frames %v denial %q", kindsOf(fs), fs[0].Denial)
				}
				return
			}
			if fs[0].Kind != schemas.KindSessionStart || len(fs) != 2 || !strings.Contains(end.Reason, tc.want) {
				t.Fatalf("frames %v end reason %q", kindsOf(fs), end.Reason)
			}
		})
	}
}
