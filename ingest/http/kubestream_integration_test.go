package httpproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/creack/pty"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/kubernetes"
	"github.com/tapline/tapline/schemas/protocol"
)

// kubeStreams is an API server for the streams of kubectl exec and
// port-forward, on the kubelet's own streaming code (k8s.io/cri-streaming) so
// the wire is the real one: exec runs the command here, port-forward dials
// a local port. Both transports: WebSocket v5.channel.k8s.io (the API
// server's own, which the kubelet library lacks, on its channel multiplexer)
// and SPDY/3.1. Everything else is answered by api.
type kubeStreams struct {
	api     *fakeAPIServer
	tunnels atomic.Int32 // port-forwards tunnelled through a WebSocket
	execs   atomic.Int32 // execs served to their end
}

const (
	discoveryAPI  = `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}`
	discoveryAPIs = `{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`
	discoveryV1   = `{"kind":"APIResourceList","groupVersion":"v1","resources":[
{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},
{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},
{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},
{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]},
{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["get","list","create"]}]}`
	podJSON = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"app","uid":"u1"},"spec":{"containers":[{"name":"c","image":"busybox","stdin":true}]},"status":{"phase":"Running"}}`
)

func (k *kubeStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := ""
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/pods/p/exec"):
		k.api.note(r)
		k.exec(w, r, r.URL.Query()["command"], false)
		return
	case strings.HasSuffix(p, "/pods/p/attach"):
		k.api.note(r)
		k.exec(w, r, containerMain, true)
		return
	case strings.HasSuffix(p, "/pods/p/portforward") && wsstream.IsWebSocketRequest(r):
		k.api.note(r)
		k.tunnel(w, r)
		return
	case strings.HasSuffix(p, "/pods/p/portforward"):
		k.api.note(r)
		portforward.ServePortForward(w, r, dialer{}, "p", "u1", nil, time.Minute, 30*time.Second, portforward.SupportedProtocols)
		return
	case p == "/api":
		body = discoveryAPI
	case p == "/apis":
		body = discoveryAPIs
	case p == "/api/v1":
		body = discoveryV1
	case strings.HasSuffix(p, "/pods/p"):
		body = podJSON
	default:
		k.api.ServeHTTP(w, r)
		return
	}
	k.api.note(r)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

// forbiddenExec is the cluster's RBAC denial of an exec to the user "denied".
const forbiddenExec = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"p\" is forbidden: User \"denied\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"app\"","reason":"Forbidden","details":{"name":"p","kind":"pods"},"code":403}`

// containerMain is what runs in the fake pod's container, for attach: it
// answers each line in capitals.
var containerMain = []string{"tr", "a-z", "A-Z"}

// exec serves an exec of cmd, or an attach to the container running cmd.
func (k *kubeStreams) exec(w http.ResponseWriter, r *http.Request, cmd []string, attach bool) {
	defer k.execs.Add(1)
	if r.Header.Get("Impersonate-User") == "denied" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, forbiddenExec)
		return
	}
	// The API server's parameter names, not the kubelet's.
	q := r.URL.Query()
	opts := &remotecommand.Options{Stdin: q.Get("stdin") == "true", Stdout: q.Get("stdout") == "true",
		Stderr: q.Get("stderr") == "true", TTY: q.Get("tty") == "true"}
	if !wsstream.IsWebSocketRequest(r) && attach {
		remotecommand.ServeAttach(w, r, attachTo{cmd}, "p", "u1", "c", opts, time.Minute, 30*time.Second, remotecommand.SupportedStreamingProtocols)
		return
	}
	if !wsstream.IsWebSocketRequest(r) {
		remotecommand.ServeExec(w, r, localExec{}, "p", "u1", "c", cmd, opts, time.Minute, 30*time.Second, remotecommand.SupportedStreamingProtocols)
		return
	}
	read := func(on bool) wsstream.ChannelType {
		if on {
			return wsstream.ReadChannel
		}
		return wsstream.IgnoreChannel
	}
	write := func(on bool) wsstream.ChannelType {
		if on {
			return wsstream.WriteChannel
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{read(opts.Stdin), write(opts.Stdout), write(opts.Stderr), wsstream.WriteChannel, wsstream.ReadChannel}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{"v5.channel.k8s.io": {Binary: true, Channels: channels}})
	_, streams, err := conn.Open(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	var stdin io.Reader
	if opts.Stdin {
		stdin = streams[0]
	}
	resize := make(chan remotecommand.TerminalSize, 16)
	go func() {
		defer close(resize)
		dec := json.NewDecoder(streams[4])
		for {
			var size remotecommand.TerminalSize
			if dec.Decode(&size) != nil {
				return
			}
			resize <- size
		}
	}()
	err = localExec{}.ExecInContainer(r.Context(), "p", "u1", "c", cmd, stdin, streams[1], streams[2], opts.TTY, resize, 0)
	_, _ = streams[3].Write([]byte(execStatus(err)))
}

// execStatus is the Status an exec ends with on its error channel.
func execStatus(err error) string {
	var ee utilexec.ExitError
	switch {
	case err == nil:
		return `{"metadata":{},"status":"Success"}`
	case errors.As(err, &ee):
		return fmt.Sprintf(`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: %v","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"%d"}]}}`, err, ee.ExitStatus())
	}
	return fmt.Sprintf(`{"metadata":{},"status":"Failure","message":%q,"reason":"InternalError"}`, err.Error())
}

// attachTo attaches to cmd, run here as the container's main process.
type attachTo struct{ cmd []string }

func (a attachTo) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return localExec{}.ExecInContainer(ctx, name, uid, container, a.cmd, in, out, errw, tty, resize, 0)
}

// localExec runs the command here, as a kubelet runs it in a container.
type localExec struct{}

func (localExec) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	if tty {
		return runTTY(c, in, out, resize)
	}
	c.Stdout, c.Stderr = out, errw
	if in != nil {
		// Not c.Stdin: Wait would wait for a client that keeps stdin open.
		w, err := c.StdinPipe()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(w, in)
			w.Close()
		}()
	}
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &utilexec.ExitErrorWrapper{ExitError: ee}
	}
	return err
}

// tunnel serves a port-forward whose SPDY/3.1 is tunnelled through a
// WebSocket (kubectl 1.31 and later), as the API server does: the WebSocket
// becomes the connection the SPDY upgrade hijacks.
func (k *kubeStreams) tunnel(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"SPDY/3.1+portforward.k8s.io"}})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	if ws.Subprotocol() == "" {
		ws.Close(websocket.StatusProtocolError, "no tunnelling subprotocol")
		return
	}
	k.tunnels.Add(1)
	conn := websocket.NetConn(r.Context(), ws, websocket.MessageBinary)
	spdyReq := r.Clone(r.Context())
	spdyReq.Method = http.MethodPost
	for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		spdyReq.Header.Del(h)
	}
	spdyReq.Header.Set("Connection", "Upgrade")
	spdyReq.Header.Set("Upgrade", "SPDY/3.1")
	spdyReq.Header.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	portforward.ServePortForward(&hijacked{conn: conn, h: http.Header{}}, spdyReq, dialer{}, "p", "u1", nil, time.Minute, 30*time.Second, portforward.SupportedProtocols)
}

// hijacked is a ResponseWriter whose connection is already upgraded.
type hijacked struct {
	conn net.Conn
	h    http.Header
}

func (h *hijacked) Header() http.Header       { return h.h }
func (h *hijacked) Write([]byte) (int, error) { return 0, http.ErrHijacked }
func (h *hijacked) WriteHeader(int)           {}
func (h *hijacked) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// runTTY runs c on a terminal sized by resize, as a container runtime does
// for exec -t.
func runTTY(c *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	f, err := pty.Start(c)
	if err != nil {
		return err
	}
	var mu sync.Mutex // resizes stop when the terminal closes
	closed := false
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		f.Close()
	}()
	go func() {
		for size := range resize {
			mu.Lock()
			if !closed {
				_ = pty.Setsize(f, &pty.Winsize{Rows: size.Height, Cols: size.Width})
			}
			mu.Unlock()
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(f, in) }()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, f) // ends with EIO once the command and its children are gone
	}()
	err = c.Wait()
	<-copied
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &utilexec.ExitErrorWrapper{ExitError: ee}
	}
	return err
}

// dialer forwards a pod port to the same port on this host.
type dialer struct{}

func (dialer) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c, stream)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(stream, c)
	wg.Wait()
	return nil
}

// replayKube stitches a recorded session's commands and replays it as text,
// as the query side does through the protocol registry.
func replayKube(t *testing.T, fs []schemas.Frame) ([]schemas.Command, string) {
	t.Helper()
	p := kubernetes.Protocol{}
	seq := func(yield func(schemas.Frame, error) bool) {
		for _, f := range fs {
			if !yield(f, nil) {
				return
			}
		}
	}
	cmds, err := p.Commands(seq, protocol.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := p.Replay(&text, kubernetes.FormatText, seq, protocol.ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	return cmds, text.String()
}

func kinds(fs []schemas.Frame) map[string]string {
	out := map[string]string{}
	for _, f := range fs {
		out[f.Kind] += string(f.Payload)
	}
	return out
}

// kubectl exec with stdin piped, over WebSocket (kubectl's default) and SPDY:
// the command's input, output and exit status reach kubectl, and the session
// records each stream per channel, the exec as a command with exit status 3,
// and replays and verifies.
func TestKubernetesExec(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	api := &fakeAPIServer{}
	up := startUpstream(t, &kubeStreams{api: api})
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	for _, c := range []struct {
		name string
		env  []string
		sub  string
	}{
		{"websocket", nil, "exec-ws"},
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, "exec-spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := g.kubeconfig(g.token(c.sub, "ops"))
			out, err := kubectl(kc, c.env, strings.NewReader("line one\nline two\n"),
				"exec", "-i", "p", "--", "sh", "-c", "cat; echo to-stderr >&2; exit 3")
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "line one\nline two\n") || !strings.Contains(out, "to-stderr") {
				t.Fatalf("kubectl exec: %v\n%s", err, out)
			}
			fs := g.frames.execSession(c.sub)
			verifyChain(t, g.signer, fs)
			got := kinds(fs)
			if got[kubernetes.KindStdin] != "line one\nline two\n" || got[kubernetes.KindStdout] != "line one\nline two\n" ||
				got[kubernetes.KindStderr] != "to-stderr\n" || !strings.Contains(got[kubernetes.KindStatus], "NonZeroExitCode") {
				t.Fatalf("recorded streams: %q", got)
			}
			if _, whole := got[hs.KindWSBinary]; whole {
				t.Fatalf("WebSocket messages recorded whole: %q", got[hs.KindWSBinary])
			}
			cmds, text := replayKube(t, fs)
			if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool {
				return strings.HasPrefix(cmd.Text, "exec pods/p -n app -- sh -c") && cmd.ExitStatus != nil && *cmd.ExitStatus == 3
			}) {
				t.Fatalf("no exec command with exit status 3 in %+v", cmds)
			}
			for _, want := range []string{"$ kubectl exec pods/p -n app -- sh -c", "stdout: line one\\x0aline two\\x0a", "-> exit 3"} {
				if !strings.Contains(text, want) {
					t.Errorf("replay lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// The cluster's own RBAC denial of an exec reaches kubectl as the cluster
// wrote it, over either transport, and is recorded as the call's status.
func TestKubernetesExecDeniedByCluster(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	up := startUpstream(t, &kubeStreams{api: &fakeAPIServer{}})
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	kc := g.kubeconfig(g.token("denied", "ops"))
	for _, env := range [][]string{nil, {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
		out, err := kubectl(kc, env, nil, "exec", "p", "--", "true")
		if err == nil || !strings.Contains(out, `Error from server (Forbidden): pods "p" is forbidden: User "denied" cannot create resource "pods/exec"`) {
			t.Fatalf("kubectl exec (%v): %v\n%s", env, err, out)
		}
	}
	var denied []schemas.Command
	waitFor(t, "the denied exec recorded", func() bool {
		denied = nil
		g.frames.mu.Lock()
		all := maps.Clone(g.frames.sessions)
		g.frames.mu.Unlock()
		for _, fs := range all {
			if fs[0].Start == nil || fs[0].Start.Subject != "denied" || fs[len(fs)-1].Kind != schemas.KindSessionEnd {
				continue
			}
			cmds, _ := replayKube(t, fs)
			for _, c := range cmds {
				if c.Text == "exec pods/p -n app -- true" && c.ExitStatus != nil && *c.ExitStatus == 403 {
					denied = append(denied, c)
				}
			}
		}
		return len(denied) >= 3 // WebSocket, its fallback to SPDY, SPDY
	})
}

// kubectl attach -i over WebSocket and SPDY: the container's process reads
// the agent's input and answers, and the attach is recorded per channel as a
// command with its exit status.
func TestKubernetesAttach(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	up := startUpstream(t, &kubeStreams{api: &fakeAPIServer{}})
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	for _, c := range []struct {
		name string
		env  []string
		sub  string
	}{
		{"websocket", nil, "attach-ws"},
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, "attach-spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := g.kubeconfig(g.token(c.sub, "ops"))
			out, err := kubectl(kc, c.env, strings.NewReader("hello attach\n"), "attach", "-i", "p")
			if err != nil || !strings.Contains(out, "HELLO ATTACH") {
				t.Fatalf("kubectl attach: %v\n%s", err, out)
			}
			fs := g.frames.execSession(c.sub)
			verifyChain(t, g.signer, fs)
			got := kinds(fs)
			if got[kubernetes.KindStdin] != "hello attach\n" || got[kubernetes.KindStdout] != "HELLO ATTACH\n" {
				t.Fatalf("recorded streams: %q", got)
			}
			cmds, _ := replayKube(t, fs)
			if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool {
				return cmd.Text == "attach pods/p -n app" && cmd.ExitStatus != nil && *cmd.ExitStatus == 0
			}) {
				t.Fatalf("no attach command with exit status 0 in %+v", cmds)
			}
		})
	}
}

// execSession waits for the complete session of sub that holds an exec's status.
func (c *collector) execSession(sub string) []schemas.Frame {
	return c.sessionOf(sub, kubernetes.KindStatus)
}

// sessionOf waits for the complete session of sub that holds a frame of kind.
func (c *collector) sessionOf(sub, kind string) []schemas.Frame {
	c.t.Helper()
	var out []schemas.Frame
	waitFor(c.t, "the session of "+sub+" with "+kind, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, fs := range c.sessions {
			if fs[0].Seq != 0 || fs[0].Start == nil || fs[0].Start.Subject != sub || fs[len(fs)-1].Kind != schemas.KindSessionEnd {
				continue
			}
			if slices.ContainsFunc(fs, func(f schemas.Frame) bool { return f.Kind == kind }) {
				out = slices.Clone(fs)
				return true
			}
		}
		return false
	})
	return out
}

// kubectl port-forward over a SPDY tunnel in a WebSocket (kubectl's default)
// and over SPDY: an HTTP request through the forwarded port gets the pod's
// answer, and the session records both directions' bytes as port data.
func TestKubernetesPortForward(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the pod")
	}))
	t.Cleanup(app.Close)
	_, podPort, _ := net.SplitHostPort(app.Listener.Addr().String())
	ks := &kubeStreams{api: &fakeAPIServer{}}
	up := startUpstream(t, ks)
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	for _, c := range []struct {
		name string
		env  []string
		sub  string
	}{
		{"websocket", nil, "pf-ws"},
		{"spdy", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}, "pf-spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := g.kubeconfig(g.token(c.sub, "ops"))
			before := ks.tunnels.Load()
			local, stop := portForward(t, kc, c.env, "p", ":"+podPort)
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + local + "/through-the-tunnel")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello from the pod" {
				t.Fatalf("through the forwarded port: %q", body)
			}
			stop() // the session ends with kubectl's connection
			if tunnelled := ks.tunnels.Load() > before; tunnelled != (c.name == "websocket") {
				t.Fatalf("port-forward tunnelled through a WebSocket: %v", tunnelled)
			}
			fs := g.frames.sessionOf(c.sub, kubernetes.KindPortData)
			verifyChain(t, g.signer, fs)
			got := kinds(fs)
			data := got[kubernetes.KindPortData]
			if _, whole := got[hs.KindWSBinary]; whole {
				t.Fatal("tunnel messages recorded whole")
			}
			if !strings.Contains(data, "GET /through-the-tunnel HTTP/1.1") || !strings.Contains(data, "hello from the pod") {
				t.Fatalf("recorded port data: %q", data)
			}
			cmds, _ := replayKube(t, fs)
			if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool { return cmd.Text == "port-forward pods/p -n app" }) {
				t.Fatalf("no port-forward command in %+v", cmds)
			}
		})
	}
}

// portForward starts kubectl port-forward and returns the local address it
// listens on and what stops it (the test's end does too).
func portForward(t *testing.T, kubeconfig string, env []string, args ...string) (string, func()) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(filepath.Dir(kubeconfig), "cache"),
		"port-forward", "--address", "127.0.0.1"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) ->`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		return a, stop
	case <-time.After(60 * time.Second):
		stop()
		t.Fatalf("kubectl port-forward did not start within 60s: %s", stderr.String())
	}
	return "", stop
}

// kubectl exec -it on a terminal, over WebSocket and SPDY: the shell sees the
// agent's terminal size, also after the agent resizes it, and its exit status
// is kubectl's; the session records the resize and replays as asciicast.
func TestKubernetesExecTTY(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	up := startUpstream(t, &kubeStreams{api: &fakeAPIServer{}})
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	for _, c := range []struct {
		name string
		env  []string
		sub  string
	}{
		{"websocket", nil, "tty-ws"},
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, "tty-spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := g.kubeconfig(g.token(c.sub, "ops"))
			cmd := exec.Command("kubectl", "--kubeconfig", kc, "--cache-dir", filepath.Join(filepath.Dir(kc), "cache"),
				"exec", "-it", "p", "--", "sh")
			cmd.Env = append(os.Environ(), c.env...)
			err := resizeOnTerminal(t, cmd, "exit 5")
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 5 {
				t.Fatalf("kubectl exec -it: %v", err)
			}
			fs := g.frames.execSession(c.sub)
			verifyChain(t, g.signer, fs)
			if !slices.ContainsFunc(fs, func(f schemas.Frame) bool {
				return f.Kind == kubernetes.KindResize && strings.Contains(string(f.Payload), `"Width":100`) && strings.Contains(string(f.Payload), `"Height":40`)
			}) {
				t.Fatalf("no resize to 100x40 recorded: %q", kinds(fs)[kubernetes.KindResize])
			}
			cmds, _ := replayKube(t, fs)
			if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool {
				return cmd.Text == "exec pods/p -n app -- sh" && cmd.ExitStatus != nil && *cmd.ExitStatus == 5
			}) {
				t.Fatalf("no exec command with exit status 5 in %+v", cmds)
			}
			var cast bytes.Buffer
			seq := func(yield func(schemas.Frame, error) bool) {
				for _, f := range fs {
					if !yield(f, nil) {
						return
					}
				}
			}
			if err := (kubernetes.Protocol{}).Replay(&cast, kubernetes.FormatAsciicast, seq, protocol.ReplayOptions{}, nil); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(cast.String()), "\n")
			if !strings.Contains(lines[0], `"version":2`) || !strings.Contains(cast.String(), "40 100") || !strings.Contains(cast.String(), `"r","100x40"`) {
				t.Fatalf("asciicast:\n%s", cast.String())
			}
		})
	}
}

// resizeOnTerminal runs cmd (kubectl exec -it ... -- sh) on a terminal of 80x24,
// waits for the shell to see that size, resizes the terminal to 100x40, waits
// for the shell to see the new size, types last and returns how cmd ended.
func resizeOnTerminal(t *testing.T, cmd *exec.Cmd, last string) error {
	t.Helper()
	term, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := term.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	shown := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(screen.String(), s)
	}
	// Asked until the shell answers: the resize and the typed command travel
	// on separate streams.
	waitFor(t, "the shell to see 24 rows 80 columns", func() bool {
		_, _ = io.WriteString(term, "stty size\r")
		return waitShown(shown, "24 80")
	})
	if err := pty.Setsize(term, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shell to see the resize to 40 rows 100 columns", func() bool {
		_, _ = io.WriteString(term, "stty size\r")
		return waitShown(shown, "40 100")
	})
	_, _ = io.WriteString(term, last+"\r")
	return cmd.Wait()
}

// waitShown gives the terminal a moment to show s, at most two seconds.
func waitShown(shown func(string) bool, s string) bool {
	for range 100 {
		if shown(s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// In strict mode stdin reaches the command only once Kafka has it, over
// WebSocket and SPDY: with Kafka gone mid-exec, the next line typed never
// reaches the command, and kubectl is cut off saying why.
func TestKubernetesExecStrictStdin(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	broker := testenv.PrivateKafka(t)
	ks := &kubeStreams{api: &fakeAPIServer{}}
	up := startUpstream(t, ks)
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{brokers: broker.Brokers(), produceTimeout: 3 * time.Second})
	kc := g.kubeconfig(g.token("strict", "ops"))
	for _, env := range [][]string{nil, {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
		// A fresh (or restarted) broker may take a while to take records.
		waitFor(t, "Kafka to take frames", func() bool {
			_, err := kubectl(kc, nil, nil, "get", "--raw", "/cluster/api/v1/namespaces/app/pods/p")
			return err == nil
		})
		file := filepath.Join(t.TempDir(), "typed")
		cmd := exec.Command("kubectl", "--kubeconfig", kc, "--cache-dir", filepath.Join(filepath.Dir(kc), "cache"),
			"exec", "-i", "p", "--", "sh", "-c", "cat > "+file)
		cmd.Env = append(os.Environ(), env...)
		// A pipe of the process's own: Wait does not wait for the test to close it.
		typing, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		_, _ = io.WriteString(typing, "first line\n")
		waitFor(t, "the first line to reach the command", func() bool {
			b, _ := os.ReadFile(file)
			return string(b) == "first line\n"
		})
		before := ks.execs.Load()
		broker.Stop()
		go func() { _, _ = io.WriteString(typing, "second line\n") }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%v: kubectl exec went on with Kafka down:\n%s", env, out.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%v: kubectl exec not cut off within 60s of Kafka going down", env)
		}
		if !strings.Contains(out.String(), "error: tapline: stream cut: ") {
			t.Errorf("%v: kubectl does not say why its exec ended:\n%s", env, out.String())
		}
		waitFor(t, "the command to end", func() bool { return ks.execs.Load() > before })
		if b, _ := os.ReadFile(file); string(b) != "first line\n" {
			t.Fatalf("%v: the command received %q with Kafka down", env, b)
		}
		broker.Start()
	}
}
