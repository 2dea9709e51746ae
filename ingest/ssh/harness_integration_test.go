package sshproxy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

// itGateway is a real gateway (ingest/gateway with its SSH listener) in front of
// the test sshd, recording into a topic of its own on a real Kafka.
type itGateway struct {
	t          *testing.T
	dir        string
	addr       string // the SSH listener
	port       string
	knownHosts string // the gateway's host key, for the OpenSSH client
	hostKey    ssh.PublicKey
	issuer     *devissuer.Issuer
	brokers    []string
	topic      string
	signer     ed25519.PublicKey
	frames     *collector
	askpassN   atomic.Int64
}

type gatewayOpts struct {
	brokers        []string
	produceTimeout time.Duration
	clockSkew      string // oidc.clock_skew (default 1m)
	limits         string // the limits section as flow YAML, e.g. {max_channels_per_connection: 2}
	ciphers        string // ssh.ciphers as flow YAML, e.g. [aes128-ctr]; empty: the default
}

func startGateway(t *testing.T, o gatewayOpts) *itGateway {
	t.Helper()
	target := sshTarget(t)
	if o.brokers == nil {
		o.brokers = kafkaBrokers(t)
	}
	if o.produceTimeout == 0 {
		o.produceTimeout = 10 * time.Second
	}
	if o.clockSkew == "" {
		o.clockSkew = "1m"
	}
	if o.limits == "" {
		o.limits = "{}"
	}
	if o.ciphers == "" {
		o.ciphers = "[]"
	}
	g := &itGateway{t: t, dir: t.TempDir(), brokers: o.brokers, topic: "tapline.frames.raw.sshtest." + randHex(6)}
	createTopic(t, g.brokers, g.topic)
	g.issuer = startIssuer(t, g.dir)

	empty := filepath.Join(g.dir, "empty_known_hosts")
	writeFile(t, empty, nil)
	cfgYAML := fmt.Sprintf(`
gateway_id: gw-ssh-test
data_dir: %[1]s
kafka: {brokers: [%[2]q], topic: %[3]s, mode: strict, produce_timeout: %[4]s}
oidc: {issuer: %[5]q, audience: tapline-gateway, clock_skew: %[11]s}
ssh: {listen: "127.0.0.1:0", ciphers: %[13]s}
limits: %[12]s
targets:
  - name: box
    protocol: ssh
    address: %[6]q
    groups: [ops]
    ssh: {user: %[7]s, key_file: %[8]s, known_hosts: %[9]s}
  - name: fwd
    protocol: ssh
    address: %[6]q
    groups: [ops]
    ssh: {user: %[7]s, key_file: %[8]s, known_hosts: %[9]s, allow_port_forwarding: true}
  - name: stranger
    protocol: ssh
    address: %[6]q
    groups: [ops]
    ssh: {user: %[7]s, key_file: %[8]s, known_hosts: %[10]s}
`, g.dir, strings.Join(g.brokers, ","), g.topic, o.produceTimeout, g.issuer.URL(),
		target.Addr, target.User, target.Key, target.KnownHosts, empty, o.clockSkew, o.limits, o.ciphers)
	cfg, err := gateway.Parse([]byte(cfgYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, cfg, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("gateway: %v", err)
		}
	})
	g.addr = gw.Addr("ssh").String()
	_, g.port, _ = net.SplitHostPort(g.addr)
	g.signer = ed25519.PublicKey(gw.PublicKey())
	g.hostKey = readHostKey(t, filepath.Join(g.dir, "ssh_host_ed25519_key"))
	g.knownHosts = filepath.Join(g.dir, "gateway_known_hosts")
	writeFile(t, g.knownHosts, []byte(knownhosts.Line([]string{g.addr}, g.hostKey)+"\n"))
	g.frames = collect(t, g.brokers, g.topic)
	return g
}

func readHostKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func startIssuer(t *testing.T, dir string) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		iss.Serve(ctx, "")
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return iss
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev issuer not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *itGateway) token(sub string, groups ...string) string {
	g.t.Helper()
	tok, err := g.issuer.Mint(sub, groups, time.Hour)
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

// sshArgs are the options every OpenSSH invocation gets: no user config, the
// gateway's host key pinned, the token typed by SSH_ASKPASS.
func (g *itGateway) sshArgs(extra ...string) []string {
	return append([]string{
		"-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + g.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "PubkeyAuthentication=no",
		"-o", "PreferredAuthentications=keyboard-interactive,password",
		"-o", "NumberOfPasswordPrompts=1",
		"-o", "ConnectTimeout=10",
	}, extra...)
}

// command builds an OpenSSH tool invocation (ssh, scp, sftp) that answers the
// password prompt with token.
func (g *itGateway) command(token, tool string, args ...string) *exec.Cmd {
	g.t.Helper()
	n := g.askpassN.Add(1)
	tokFile := filepath.Join(g.dir, fmt.Sprintf("token-%d", n))
	script := filepath.Join(g.dir, fmt.Sprintf("askpass-%d.sh", n))
	writeFile(g.t, tokFile, []byte(token))
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec cat '"+tokFile+"'\n"), 0o700); err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "HOME="+g.dir)
	return cmd
}

// ssh runs `ssh -p PORT user@127.0.0.1 args...` with stdin and returns stdout,
// stderr and the exit code.
func (g *itGateway) ssh(token, user, stdin string, args ...string) (string, string, int) {
	g.t.Helper()
	all := append(g.sshArgs("-p", g.port, user+"@127.0.0.1"), args...)
	cmd := g.command(token, "ssh", all...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	g.t.Fatalf("ssh: %v", err)
	return "", "", -1
}

// goClient connects with the Go SSH client (for several channels at once).
func (g *itGateway) goClient(user, token string) *ssh.Client {
	g.t.Helper()
	c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		g.t.Fatalf("dial gateway as %s: %v", user, err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

func createTopic(t *testing.T, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	testenv.CreateTopic(t, brokers, topic, 1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm.DeleteTopics(ctx, topic)
		cl.Close()
	})
}

// keptPayload bounds what the collector keeps of each payload; bulk transfers are
// checked through digests, counts and the session end instead.
const keptPayload = 64 << 10

// collector consumes the gateway's topic, checks every payload against its
// digest, and keeps frames by session.
type collector struct {
	t        *testing.T
	mu       sync.Mutex
	sessions map[string][]schemas.Frame
	bad      []string
}

func collect(t *testing.T, brokers []string, topic string) *collector {
	c := &collector{t: t, sessions: map[string][]schemas.Frame{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(c.add)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

func (c *collector) add(r *kgo.Record) {
	f, err := schemas.FrameCodec().Decode(r.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	if !bytes.Equal(schemas.PayloadDigest(f.PayloadSalt, f.Payload), f.PayloadDigest) {
		c.bad = append(c.bad, fmt.Sprintf("session %s seq %d: payload does not match its digest", f.SessionID, f.Seq))
	}
	if len(f.Payload) > keptPayload {
		f.Payload = f.Payload[:keptPayload]
	}
	c.sessions[f.SessionID] = append(c.sessions[f.SessionID], f)
}

// session waits for a complete session (start or denial through end) whose first
// frame satisfies match, and returns its frames.
func (c *collector) session(match func(first schemas.Frame) bool) []schemas.Frame {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fs := c.find(match); fs != nil {
			return fs
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no matching complete session recorded within 30s")
	return nil
}

func (c *collector) find(match func(first schemas.Frame) bool) []schemas.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		c.t.Fatalf("bad frames: %v", c.bad)
	}
	for _, fs := range c.sessions {
		if fs[0].Seq != 0 || !match(fs[0]) || fs[len(fs)-1].Kind != schemas.KindSessionEnd {
			continue
		}
		return slices.Clone(fs)
	}
	return nil
}

// verifyChain checks what `tapline verify` checks: seq without gaps, every link,
// and the gateway's signature on the end.
func verifyChain(t *testing.T, pub ed25519.PublicKey, fs []schemas.Frame) *schemas.SessionEnd {
	t.Helper()
	prev := schemas.ZeroHash
	for i, f := range fs {
		if f.Seq != int64(i) {
			t.Fatalf("seq %d at position %d", f.Seq, i)
		}
		if err := checkLink(&f, prev); err != nil {
			t.Fatalf("seq %d: %v", f.Seq, err)
		}
		prev = f.Hash
	}
	end := fs[len(fs)-1].End
	if end == nil {
		t.Fatal("last frame has no end")
	}
	if err := schemas.VerifyEnd(pub, fs[0].SessionID, end); err != nil {
		t.Fatalf("end signature: %v", err)
	}
	return end
}

// checkLink is schemas.CheckLink, except for payloads the collector cut (it
// checked those against their digest when it read them).
func checkLink(f *schemas.Frame, prev []byte) error {
	if len(f.Payload) < keptPayload {
		return schemas.CheckLink(f, prev)
	}
	h, err := schemas.ChainHash(f)
	if err != nil {
		return err
	}
	if !bytes.Equal(f.PrevHash, prev) || !bytes.Equal(h, f.Hash) {
		return errors.New("broken link")
	}
	return nil
}

func bySubject(sub string) func(schemas.Frame) bool {
	return func(f schemas.Frame) bool { return f.Start != nil && f.Start.Subject == sub }
}

func protocolFrames(fs []schemas.Frame) []schemas.Frame {
	return slices.DeleteFunc(slices.Clone(fs), func(f schemas.Frame) bool { return f.IsLifecycle() })
}

// stream concatenates the payloads of frames of kind and direction on channel.
func stream(fs []schemas.Frame, kind string, dir schemas.Direction, channel int64) []byte {
	var b []byte
	for _, f := range fs {
		if f.Kind == kind && f.Direction == dir && f.Channel == channel {
			b = append(b, f.Payload...)
		}
	}
	return b
}

func firstOf(t *testing.T, fs []schemas.Frame, kind string) schemas.Frame {
	t.Helper()
	for _, f := range fs {
		if f.Kind == kind {
			return f
		}
	}
	t.Fatalf("no %s frame among %v", kind, kindsOf(fs))
	return schemas.Frame{}
}

func kindsOf(fs []schemas.Frame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d:%s/%s/%d", f.Seq, f.Direction, f.Kind, f.Channel))
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// lockedBuffer collects output written by another goroutine.
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
