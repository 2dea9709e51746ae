package sshproxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	sshproto "github.com/tapline/tapline/schemas/ssh"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
)

func TestExecOutputStderrExitStatusAndFrames(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)

	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run("fail 3 disk full")
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("Run: %v, want exit status 3", err)
	}
	if stderr.String() != "disk full\n" || stdout.Len() != 0 {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	c.Close()
	s := h.rec.lastSession(t)
	if reason := s.waitEnd(t); reason != "agent disconnected" {
		t.Errorf("end reason %q", reason)
	}
	if s.start.Subject != "alice" || s.start.Target != "box" || s.start.TargetAddr != h.target.addr ||
		s.start.Params["auth_method"] != "password" || !strings.HasPrefix(s.start.Params["client_version"], "SSH-2.0-Go") {
		t.Errorf("start = %+v", s.start)
	}
	frames := s.snapshot()
	want := []struct {
		dir  schemas.Direction
		kind string
	}{
		{schemas.Client, sshproto.ChannelOpen},
		{schemas.Client, "ssh.request.exec"},
		{schemas.Server, sshproto.ChannelExtData},
		{schemas.Server, sshproto.ChannelEOF},
		{schemas.Server, "ssh.request.exit-status"},
		{schemas.Server, sshproto.ChannelClose},
		{schemas.Client, sshproto.ChannelClose},
	}
	got := channelFrames(frames, 0)
	if len(got) < len(want) {
		t.Fatalf("frames %v", kinds(got))
	}
	// The agent's EOF (sent by the client library on Close) may come anywhere
	// after the exec, and the target's reply to the exec races with its output
	// through the gateway; compare the rest in order.
	reply := slices.IndexFunc(got, func(f recFrame) bool { return f.kind == "ssh.reply.exec" })
	if reply < 2 || !bytes.Equal(got[reply].payload, []byte{msgChannelSuccess}) || got[reply].dir != schemas.Server {
		t.Fatalf("exec reply missing or misplaced: %v", kinds(got))
	}
	got = slices.Delete(got, reply, reply+1)
	got = slices.DeleteFunc(got, func(f recFrame) bool { return f.dir == schemas.Client && f.kind == sshproto.ChannelEOF })
	for i, w := range want {
		if got[i].dir != w.dir || got[i].kind != w.kind {
			t.Fatalf("frame %d = %s %s, want %s %s (all: %v)", i, got[i].dir, got[i].kind, w.dir, w.kind, kinds(got))
		}
	}
	if !bytes.Equal(got[0].payload, sshString("session")) {
		t.Errorf("open payload %q", got[0].payload)
	}
	if !bytes.Equal(got[1].payload, ssh.Marshal(struct{ C string }{"fail 3 disk full"})) {
		t.Errorf("exec payload %q", got[1].payload)
	}
	if string(got[2].payload) != "disk full\n" {
		t.Errorf("stderr payload %q", got[3].payload)
	}
	if !bytes.Equal(got[4].payload, []byte{0, 0, 0, 3}) {
		t.Errorf("exit-status payload %x", got[5].payload)
	}
}

func TestPtyShellAndWindowChangeRecordedAsOnTheWire(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("tapline-target+box", tokenOps)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm-256color", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := sess.WindowChange(30, 100); err != nil {
		t.Fatal(err)
	}
	// Requests and data travel separately through the gateway (as through the
	// SSH library): let the resize land before the input that ends the shell.
	waitFor(t, func() bool { return slices.Contains(h.target.requestLog(), "window-change 16") })
	io.WriteString(stdin, "hello\n")
	got := make([]byte, 6)
	if _, err := io.ReadFull(stdout, got); err != nil || string(got) != "hello\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	stdin.Close()
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s := h.rec.lastSession(t)
	s.waitEnd(t)
	if s.start.Params["login"] != "tapline-target" {
		t.Errorf("login param %q", s.start.Params["login"])
	}
	var pty, winch []byte
	var clientData, serverData []byte
	for _, f := range channelFrames(s.snapshot(), 0) {
		switch {
		case f.kind == "ssh.request.pty-req":
			pty = f.payload
		case f.kind == "ssh.request.window-change":
			winch = f.payload
		case f.kind == sshproto.ChannelData && f.dir == schemas.Client:
			clientData = append(clientData, f.payload...)
		case f.kind == sshproto.ChannelData && f.dir == schemas.Server:
			serverData = append(serverData, f.payload...)
		}
	}
	var p struct {
		Term             string
		Cols, Rows, W, H uint32
		Modes            string
	}
	if err := ssh.Unmarshal(pty, &p); err != nil || p.Term != "xterm-256color" || p.Cols != 80 || p.Rows != 24 {
		t.Errorf("pty-req payload %x → %+v, %v", pty, p, err)
	}
	var w struct{ Cols, Rows, W, H uint32 }
	if err := ssh.Unmarshal(winch, &w); err != nil || w.Cols != 100 || w.Rows != 30 {
		t.Errorf("window-change payload %x → %+v, %v", winch, w, err)
	}
	if string(clientData) != "hello\n" || string(serverData) != "hello\n" {
		t.Errorf("data client %q server %q", clientData, serverData)
	}
	if reqs := h.target.requestLog(); !slices.Contains(reqs, "window-change 16") || reqs[0] != "pty-req "+itoa(len(pty)) {
		t.Errorf("target saw requests %v", reqs)
	}
}

func TestDenialsAreRecordedAndExplained(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, user, token, reason string
	}{
		{"bad token", "box", "forged", "invalid token"},
		{"wrong group", "box", tokenDev, `requires membership in one of [ops]; "bob" is in none of them`},
		{"unknown target", "nosuch", tokenOps, `unknown target "nosuch"`},
		{"not an ssh target", "pg", tokenOps, `target "pg" is not an SSH target`},
		{"other login", "root+box", tokenOps, `reached as login "tapline-target" only, not "root"`},
		{"no target", "root+", tokenOps, "no target in the user name"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, banner, err := h.dial(tc.user, tc.token)
			if err == nil {
				c.Close()
				t.Fatal("connection admitted")
			}
			if !strings.Contains(banner, "tapline: access denied: ") || !strings.Contains(banner, tc.reason) {
				t.Errorf("banner %q does not explain %q", banner, tc.reason)
			}
			// Denials are recorded in the background, after the agent was answered.
			waitFor(t, func() bool { return h.rec.denialCount() == i+1 })
			d := h.rec.lastDenial(t)
			if !strings.Contains(d.reason, tc.reason) {
				t.Errorf("recorded reason %q", d.reason)
			}
			if d.start.Params["user"] != tc.user || d.start.ClientAddr == "" {
				t.Errorf("denial start %+v", d.start)
			}
		})
	}
	if len(h.rec.sessions) != 0 {
		t.Errorf("%d sessions started", len(h.rec.sessions))
	}
	// Counted when the gateway's side of the handshake returns, which may be
	// just after the client saw the refusal.
	waitFor(t, func() bool {
		return testutil.ToFloat64(h.srv.m.connections.WithLabelValues(resultDenied)) == float64(len(cases))
	})
}

func TestUntrustedTargetHostKeyRefused(t *testing.T) {
	h := newHarness(t)
	for target, want := range map[string]string{
		"stranger": "presented a host key that is not in",
		"impostor": "does NOT match",
	} {
		_, banner, err := h.dial(target, tokenOps)
		if err == nil {
			t.Fatalf("%s: admitted", target)
		}
		if !strings.Contains(banner, want) {
			t.Errorf("%s: banner %q", target, banner)
		}
		s := h.rec.lastSession(t)
		if reason := s.waitEnd(t); !strings.Contains(reason, want) || s.start.Target != target {
			t.Errorf("%s: session end reason %q", target, reason)
		}
		if len(s.snapshot()) != 0 {
			t.Errorf("%s: frames recorded for a session that never reached the target", target)
		}
	}
}

func TestRecordingUnavailableRefusesNewSessions(t *testing.T) {
	h := newHarness(t)
	h.rec.startErr = errors.New("recording unavailable: kafka: connection refused")
	_, banner, err := h.dial("box", tokenOps)
	if err == nil {
		t.Fatal("admitted without recording")
	}
	if !strings.Contains(banner, "recording is unavailable") || !strings.Contains(banner, "connection refused") {
		t.Errorf("banner %q", banner)
	}
	if n := len(h.target.globalLog()); n != 0 {
		t.Errorf("target was contacted")
	}
}

func TestStrictModeInputNotForwardedWhenRecordingFails(t *testing.T) {
	h := newHarness(t)
	var failing atomic.Bool
	h.rec.failClient = func(kind string, payload []byte) error {
		if failing.Load() && kind == sshproto.ChannelData {
			return errors.New("recording unavailable: produce timeout")
		}
		return nil
	}
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	var stderr lockedBuffer
	sess.Stderr = &stderr
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "before\n")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(stdout, buf); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	io.WriteString(stdin, "rm -rf /\n")
	err := sess.Wait()
	if err == nil {
		t.Fatal("session went on after recording failed")
	}
	if got := string(h.target.received()); got != "before\n" {
		t.Errorf("target received %q; unrecorded input reached it", got)
	}
	if !strings.Contains(stderr.String(), "tapline: recording failed, agent input was not forwarded") {
		t.Errorf("agent stderr %q", stderr.String())
	}
	s := h.rec.lastSession(t)
	if reason := s.waitEnd(t); !strings.Contains(reason, "recording failed") {
		t.Errorf("end reason %q", reason)
	}
}

func TestRecordingFailureEndsLiveSession(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	var stderr lockedBuffer
	sess.Stderr = &stderr
	if err := sess.Start("sink"); err != nil {
		t.Fatal(err)
	}
	s := h.rec.lastSession(t)
	waitFor(t, func() bool { return len(h.target.requestLog()) > 0 })
	s.fail(errors.New("kafka unreachable for 10s"))
	if err := sess.Wait(); err == nil {
		t.Fatal("session survived a recording failure")
	}
	if !strings.Contains(stderr.String(), "kafka unreachable for 10s") {
		t.Errorf("agent stderr %q", stderr.String())
	}
	if reason := s.waitEnd(t); !strings.Contains(reason, "kafka unreachable") {
		t.Errorf("end reason %q", reason)
	}
}

func TestSeveralChannelsInOneConnection(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	var wg sync.WaitGroup
	outs := make([]string, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess, err := c.NewSession()
			if err != nil {
				t.Error(err)
				return
			}
			out, err := sess.Output("echo channel " + itoa(i))
			if err != nil {
				t.Error(err)
			}
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	for i, out := range outs {
		if out != "channel "+itoa(i)+"\n" {
			t.Errorf("session %d got %q", i, out)
		}
	}
	c.Close()
	s := h.rec.lastSession(t)
	s.waitEnd(t)
	seen := map[string]int64{}
	for _, f := range s.snapshot() {
		if f.kind == sshproto.ChannelData && f.dir == schemas.Server {
			seen[string(f.payload)] = f.channel
		}
	}
	ids := map[int64]bool{}
	for i := range outs {
		id, ok := seen["channel "+itoa(i)+"\n"]
		if !ok {
			t.Fatalf("output of session %d not recorded: %v", i, seen)
		}
		ids[id] = true
	}
	if len(ids) != 4 {
		t.Errorf("outputs recorded on channels %v, want 4 distinct", ids)
	}
}

func TestSlowAgentDoesNotMakeGatewayBuffer(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	stdout, _ := sess.StdoutPipe()
	const total = 64 << 20
	if err := sess.Start("produce " + itoa(total)); err != nil {
		t.Fatal(err)
	}
	// The agent reads nothing: the target can only fill the windows on the way
	// (the agent's, the gateway's) and one copy buffer.
	time.Sleep(time.Second)
	stalled := h.target.produced.Load()
	if limit := int64(3*2<<20 + dataChunk); stalled > limit {
		t.Fatalf("target wrote %d bytes to an agent that reads nothing; bound %d", stalled, limit)
	}
	if stalled == 0 {
		t.Fatal("target wrote nothing")
	}
	n, err := io.Copy(io.Discard, stdout)
	if err != nil || n != total {
		t.Fatalf("agent read %d bytes, %v", n, err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestSlowTargetDoesNotMakeGatewayBuffer(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	stdin, _ := sess.StdinPipe()
	if err := sess.Start("sink"); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			n, err := stdin.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	if w, limit := written.Load(), int64(3*2<<20+dataChunk); w > limit || w == 0 {
		t.Fatalf("agent wrote %d bytes into a target that reads nothing; want 0 < n <= %d", w, limit)
	}
}

func TestBulkDataIntact(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sess.Stdin = bytes.NewReader(data)
	out, err := sess.Output("cat")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(out) != sha256.Sum256(data) {
		t.Fatalf("echoed %d bytes differ from %d sent", len(out), len(data))
	}
	c.Close()
	s := h.rec.lastSession(t)
	s.waitEnd(t)
	var client, server []byte
	for _, f := range s.snapshot() {
		if f.kind == sshproto.ChannelData {
			if f.dir == schemas.Client {
				client = append(client, f.payload...)
			} else {
				server = append(server, f.payload...)
			}
		}
	}
	if !bytes.Equal(client, data) || !bytes.Equal(server, data) {
		t.Errorf("recorded %d client / %d server bytes, want %d each, identical", len(client), len(server), len(data))
	}
}

func TestGlobalRequestsRelayedWithReplies(t *testing.T) {
	h := newHarness(t, func(h *harness, o *Options) { h.target.sendHostKeys = true })
	c := h.mustDial("box", tokenOps)
	ok, payload, err := c.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || !ok || string(payload) != "from-target" {
		t.Fatalf("keepalive reply ok=%v payload=%q err=%v; want the target's reply", ok, payload, err)
	}
	c.Close()
	s := h.rec.lastSession(t)
	s.waitEnd(t)
	var sawReq, sawReply, sawHostKeys bool
	for _, f := range s.snapshot() {
		switch {
		case f.kind == "ssh.global.keepalive@openssh.com" && f.dir == schemas.Client && f.channel == sshproto.GlobalChannel:
			sawReq = true
		case f.kind == "ssh.reply.keepalive@openssh.com" && f.dir == schemas.Server:
			sawReply = bytes.Equal(f.payload, append([]byte{msgRequestSuccess}, "from-target"...))
		case f.kind == "ssh.global.hostkeys-00@openssh.com" && f.dir == schemas.Server:
			sawHostKeys = true
		}
	}
	if !sawReq || !sawReply || !sawHostKeys {
		t.Errorf("request %v reply %v hostkeys %v", sawReq, sawReply, sawHostKeys)
	}
}

func TestTargetHostKeysNotPassedToAgent(t *testing.T) {
	h := newHarness(t, func(h *harness, o *Options) { h.target.sendHostKeys = true })
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, h.addr, &ssh.ClientConfig{
		User: "box", Auth: []ssh.AuthMethod{ssh.Password(tokenOps)}, HostKeyCallback: ssh.FixedHostKey(h.srv.HostKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go ssh.DiscardRequests(nil)
	go func() {
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "")
		}
	}()
	// A keepalive round trip orders after anything the gateway relayed before it.
	conn.SendRequest("keepalive@openssh.com", true, nil)
	select {
	case req := <-reqs:
		t.Fatalf("agent received global request %q", req.Type)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestForwardingDeniedByDefault(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	_, err := c.Dial("tcp", "127.0.0.1:9")
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited || !strings.Contains(oe.Message, "port forwarding is not allowed") {
		t.Fatalf("direct-tcpip: %v", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Fatal("tcpip-forward accepted")
	}
	sess, _ := c.NewSession()
	if ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
		t.Fatalf("agent forwarding request: ok=%v err=%v", ok, err)
	}
	sess.Close()
	c.Close()
	s := h.rec.lastSession(t)
	s.waitEnd(t)
	var kindsSeen []string
	for _, f := range s.snapshot() {
		kindsSeen = append(kindsSeen, string(f.dir)+" "+f.kind)
	}
	for _, want := range []string{
		"CLIENT ssh.channel.open", "SERVER ssh.channel.open-failure",
		"CLIENT ssh.global.tcpip-forward", "SERVER ssh.reply.tcpip-forward",
		"CLIENT ssh.request.auth-agent-req@openssh.com", "SERVER ssh.reply.auth-agent-req@openssh.com",
	} {
		if !slices.Contains(kindsSeen, want) {
			t.Errorf("missing frame %q in %v", want, kindsSeen)
		}
	}
	for _, g := range h.target.globalLog() {
		if g == "tcpip-forward" {
			t.Error("tcpip-forward reached the target")
		}
	}
	if slices.ContainsFunc(h.target.requestLog(), func(r string) bool { return strings.HasPrefix(r, "auth-agent-req") }) {
		t.Error("auth-agent-req reached the target")
	}
}

func TestForwardingAllowedIsRelayed(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("fwd", tokenOps)
	// The fake target refuses direct-tcpip itself: the refusal must be its own,
	// relayed, not the gateway's policy.
	_, err := c.Dial("tcp", "127.0.0.1:9")
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || !strings.Contains(oe.Message, "fake target runs sessions only") {
		t.Fatalf("direct-tcpip: %v", err)
	}
	sess, _ := c.NewSession()
	if _, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return slices.ContainsFunc(h.target.requestLog(), func(r string) bool { return strings.HasPrefix(r, "auth-agent-req@openssh.com") })
	})
}

func TestHostKeyPersistedInDataDir(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadHostKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadHostKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Fatal("host key changed between starts")
	}
	fi, err := os.Stat(filepath.Join(dir, hostKeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v %v", fi, err)
	}
	k3, err := loadHostKey(filepath.Join(dir, hostKeyFileName), "")
	if err != nil || !bytes.Equal(k1.PublicKey().Marshal(), k3.PublicKey().Marshal()) {
		t.Fatalf("configured path: %v", err)
	}
	if _, err := loadHostKey(filepath.Join(dir, "missing"), dir); err == nil {
		t.Fatal("a configured host key that does not exist was accepted")
	}
}

func TestSplitUser(t *testing.T) {
	for user, want := range map[string][2]string{
		"box":                {"", "box"},
		"deploy+box":         {"deploy", "box"},
		"a+b+box":            {"a+b", "box"},
		"+box":               {"", "box"},
		"tapline-target+db1": {"tapline-target", "db1"},
	} {
		login, target := splitUser(user, "+")
		if login != want[0] || target != want[1] {
			t.Errorf("splitUser(%q) = %q, %q", user, login, target)
		}
	}
	c := Config{UserSeparator: "@"}
	if err := c.fillDefaults(); err == nil {
		t.Error("'@' accepted as separator")
	}
}

func TestCiphersConfig(t *testing.T) {
	c := Config{Ciphers: []string{"aes128-gcm@openssh.com", "aes128-ctr"}}
	if err := c.fillDefaults(); err != nil {
		t.Fatal(err)
	}
	c = Config{Ciphers: []string{"aes128-gcm@openssh.com", "blowfish-cbc"}}
	err := c.fillDefaults()
	if err == nil || !strings.Contains(err.Error(), `"blowfish-cbc" is not supported; choose from`) {
		t.Fatalf("unknown cipher: %v", err)
	}
}

func TestTargetConfigErrors(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "kh")
	writeFile(t, kh, nil)
	for name, tc := range map[string]struct {
		cfg  TargetConfig
		want string
	}{
		"no user":       {TargetConfig{KnownHosts: kh, PasswordEnv: "HOME"}, "ssh.user is required"},
		"no host check": {TargetConfig{User: "u", PasswordEnv: "HOME"}, "known_hosts is required"},
		"both":          {TargetConfig{User: "u", KnownHosts: kh, InsecureAcceptAnyHostKey: true, PasswordEnv: "HOME"}, "not both"},
		"no creds":      {TargetConfig{User: "u", KnownHosts: kh}, "set ssh.key_file or ssh.password_env"},
		"missing key":   {TargetConfig{User: "u", KnownHosts: kh, KeyFile: filepath.Join(dir, "nope")}, "key_file"},
		"empty env":     {TargetConfig{User: "u", KnownHosts: kh, PasswordEnv: "TAPLINE_TEST_UNSET_VAR"}, "is empty"},
	} {
		tg := Target{Name: "t", Address: "127.0.0.1:22", SSH: tc.cfg}
		if _, err := tg.upstreamAuth(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestInsecureAcceptAnyHostKeyConnects(t *testing.T) {
	h := newHarness(t, func(h *harness, o *Options) {
		tc := o.Targets[3].SSH // "stranger": its known_hosts is empty
		tc.KnownHosts, tc.InsecureAcceptAnyHostKey = "", true
		o.Targets[3].SSH = tc
	})
	c := h.mustDial("stranger", tokenOps)
	sess, _ := c.NewSession()
	if out, err := sess.Output("echo ok"); err != nil || string(out) != "ok\n" {
		t.Fatalf("%q %v", out, err)
	}
}

func channelFrames(frames []recFrame, id int64) []recFrame {
	var out []recFrame
	for _, f := range frames {
		if f.channel == id {
			out = append(out, f)
		}
	}
	return out
}

func kinds(frames []recFrame) []string {
	var out []string
	for _, f := range frames {
		out = append(out, string(f.dir)+" "+f.kind)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for the SSH library's copy goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestShutdownEndsLiveSessions(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("box", tokenOps)
	sess, _ := c.NewSession()
	var stderr lockedBuffer
	sess.Stderr = &stderr
	if err := sess.Start("sink"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(h.target.requestLog()) > 0 })
	// A second agent stuck in authentication must not hold the shutdown up.
	idle, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	h.shutdown()
	if err := sess.Wait(); err == nil {
		t.Fatal("session survived the shutdown")
	}
	if !strings.Contains(stderr.String(), "tapline: gateway shutdown") {
		t.Errorf("agent stderr %q", stderr.String())
	}
	if reason := h.rec.lastSession(t).waitEnd(t); reason != "gateway shutdown" {
		t.Errorf("end reason %q", reason)
	}
	io.Copy(io.Discard, idle) // returns once the gateway closed it
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}
