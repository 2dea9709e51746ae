package httpproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/kubernetes"
	"github.com/tapline/tapline/schemas/protocol"
)

// realCluster is a gateway in front of the test cluster's real kube-apiserver
// (integration/scripts/kubernetes.sh), agents in its agent group allowed.
type realCluster struct {
	k testenv.Kube
	g *itGateway
}

func startRealCluster(t *testing.T) *realCluster {
	t.Helper()
	skipShort(t)
	k := testenv.Kubernetes(t)
	g := startGateway(t, gatewayOpts{targets: fmt.Sprintf(`  - name: cluster
    protocol: kubernetes
    address: %q
    groups: [%s, outsiders]
    http: {ca_file: %q, bearer: {env: KUBE_TOKEN}}
`, strings.TrimPrefix(k.Server, "https://"), k.AgentGroup, k.CA), env: map[string]string{"KUBE_TOKEN": k.GatewayToken}})
	return &realCluster{k: k, g: g}
}

// kubectl runs the cluster's kubectl 1.37 through the gateway as sub in groups.
func (c *realCluster) kubectl(t *testing.T, sub string, groups []string, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	cfg := c.k.Kubeconfig(t, c.g.base+"/cluster", c.g.caPath(), c.g.token(sub, groups...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.k.Kubectl, append([]string{"--kubeconfig", cfg, "--cache-dir", cfg + ".cache"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), err
}

// Stock kubectl 1.37 through the gateway to a real API server: the cluster
// sees the agent impersonated; its RBAC denials come through as its own;
// a Secret created and read back is masked downstream; exec over WebSocket
// and SPDY and port-forward carry the agent's bytes, recorded per channel.
func TestKubernetesRealCluster(t *testing.T) {
	c := startRealCluster(t)
	agents := []string{c.k.AgentGroup}

	t.Run("whoami", func(t *testing.T) {
		out, err := c.kubectl(t, "real-alice", agents, nil, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
		if err != nil || !strings.HasPrefix(out, "real-alice ") || !strings.Contains(out, c.k.AgentGroup) {
			t.Fatalf("auth whoami: %v\n%s", err, out)
		}
	})
	t.Run("rbac denial", func(t *testing.T) {
		out, err := c.kubectl(t, "real-bob", []string{"outsiders"}, nil, "", "get", "pods")
		if err == nil || !strings.Contains(out, `Error from server (Forbidden): pods is forbidden: User "real-bob" cannot list resource "pods"`) {
			t.Fatalf("kubectl get pods as an outsider: %v\n%s", err, out)
		}
	})
	t.Run("secret masked", func(t *testing.T) {
		name := fmt.Sprintf("s-%d", time.Now().UnixNano())
		const value = "real-hunter2-secret"
		if out, err := c.kubectl(t, "real-secret", agents, nil, "", "create", "secret", "generic", name, "--from-literal", "password="+value); err != nil {
			t.Fatalf("create secret: %v\n%s", err, out)
		}
		out, err := c.kubectl(t, "real-secret", agents, nil, "", "get", "secret", name, "-o", "jsonpath={.data.password}")
		if err != nil || out != base64Of(value) {
			t.Fatalf("get secret: %v %q", err, out)
		}
		_, _ = c.kubectl(t, "real-secret", agents, nil, "", "delete", "secret", name)
		var all []schemas.Frame
		// kubectl's calls are read whole: the Secret travels in complete frames
		// (the request's body in protobuf, the value raw), which masking must open.
		carries := func(kind string) bool {
			return slices.ContainsFunc(all, func(f schemas.Frame) bool {
				return f.Kind == kind && (bytes.Contains(f.Payload, []byte(base64Of(value))) || bytes.Contains(f.Payload, []byte(value)))
			})
		}
		waitFor(t, "the Secret in complete request and response frames", func() bool {
			all = c.g.frames.allOf("real-secret")
			return carries(hs.KindRequestComplete) && carries(hs.KindResponseComplete)
		})
		conv := kubernetes.Protocol{}.NewConversation()
		for i := range all {
			f := all[i]
			f.Payload = conv.Mask(&f, noRules{}, protocol.Counts{})
			if bytes.Contains(f.Payload, []byte(base64Of(value))) || bytes.Contains(f.Payload, []byte(value)) {
				t.Fatalf("frame %d (%s) keeps the secret after masking: %.300s", f.Seq, f.Kind, f.Payload)
			}
		}
	})
	t.Run("apply, patch, delete", func(t *testing.T) {
		name := fmt.Sprintf("a-%d", time.Now().UnixNano())
		manifest := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {k: v1}\n", name)
		steps := [][]string{
			{"apply", "-f", "-"},
			{"patch", "configmap", name, "--type", "merge", "-p", `{"data":{"k":"v2"}}`},
			{"get", "configmap", name, "-o", "jsonpath={.data.k}"},
			{"delete", "configmap", name},
		}
		var got string
		for i, args := range steps {
			stdin := ""
			if i == 0 {
				stdin = manifest
			}
			out, err := c.kubectl(t, "real-apply", agents, nil, stdin, args...)
			if err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if args[0] == "get" {
				got = out
			}
		}
		if got != "v2" {
			t.Fatalf("after the patch the config map holds %q", got)
		}
		// One session per kubectl run; the commands of all of them.
		var texts []string
		waitFor(t, "the four kubectl sessions", func() bool {
			bySession := map[string][]schemas.Frame{}
			for _, f := range c.g.frames.allOf("real-apply") {
				bySession[f.SessionID] = append(bySession[f.SessionID], f)
			}
			if len(bySession) < len(steps) {
				return false
			}
			texts = texts[:0]
			for _, fs := range bySession {
				verifyChain(t, c.g.signer, fs)
				cmds, _ := replayKube(t, fs)
				for _, cmd := range cmds {
					texts = append(texts, cmd.Text)
				}
			}
			return true
		})
		ns := " -n " + c.k.Namespace
		for _, want := range []string{"create configmaps" + ns, "patch configmaps/" + name + ns, "get configmaps/" + name + ns, "delete configmaps/" + name + ns} {
			if !slices.Contains(texts, want) {
				t.Errorf("no command %q among %q", want, texts)
			}
		}
	})
	t.Run("bad token", func(t *testing.T) {
		cfg := c.k.Kubeconfig(t, c.g.base+"/cluster", c.g.caPath(), "not-a-token")
		// kubectl prints a 401 from the gateway as it prints the cluster's own.
		out, errOut, err := c.k.Run(cfg, "", "get", "pods")
		if err == nil || !strings.Contains(errOut, "error: You must be logged in to the server") {
			t.Fatalf("kubectl with a bad token: %v\n%s%s", err, out, errOut)
		}
	})
	t.Run("logs -f", func(t *testing.T) {
		first := fmt.Sprintf("first line %d", time.Now().UnixNano())
		c.k.AppendLog(t, "stdout", first)
		lines := c.follow(t, "real-logs", agents, "logs", "-f", c.k.Pod)
		waitFor(t, "kubectl logs -f to show the first line", func() bool { return lines.has(first) })
		next := fmt.Sprintf("next line %d", time.Now().UnixNano())
		c.k.AppendLog(t, "stdout", next)
		waitFor(t, "kubectl logs -f to show a line written while it follows", func() bool { return lines.has(next) })
		lines.stop()
		fs := c.g.frames.sessionOf("real-logs", "http.response.body")
		verifyChain(t, c.g.signer, fs)
		if !strings.Contains(kinds(fs)["http.response.body"], next) {
			t.Fatal("the followed line is not in the recorded response")
		}
	})
	t.Run("get -w", func(t *testing.T) {
		lines := c.follow(t, "real-watch", agents, "get", "configmaps", "-w", "-o", "name")
		name := fmt.Sprintf("w-%d", time.Now().UnixNano())
		// Created until the watch shows it: the watch may start after a first create.
		waitFor(t, "the watch to show the new config map", func() bool {
			_, _ = c.kubectl(t, "real-watch-admin", agents, nil, "", "create", "configmap", name)
			return lines.has("configmap/" + name)
		})
		lines.stop()
		_, _ = c.kubectl(t, "real-watch-admin", agents, nil, "", "delete", "configmap", name)
		fs := c.g.frames.sessionOf("real-watch", "http.response.body")
		cmds, _ := replayKube(t, fs)
		if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool { return cmd.Text == "watch configmaps -n "+c.k.Namespace }) {
			t.Fatalf("no watch command in %+v", cmds)
		}
	})
	for _, tr := range []struct {
		name string
		env  []string
	}{{"websocket", nil}, {"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}}} {
		t.Run("exec "+tr.name, func(t *testing.T) {
			sub := "real-exec-" + tr.name
			out, err := c.kubectl(t, sub, agents, tr.env, "piped\n", "exec", "-i", c.k.Pod, "--", "sh", "-c", "echo out; read l; echo got $l")
			if err != nil || out != "out\ngot piped\n" {
				t.Fatalf("kubectl exec: %v %q", err, out)
			}
			fs := c.g.frames.sessionOf(sub, kubernetes.KindStdout)
			verifyChain(t, c.g.signer, fs)
			got := kinds(fs)
			if got[kubernetes.KindStdin] != "piped\n" || got[kubernetes.KindStdout] != "out\ngot piped\n" {
				t.Fatalf("recorded streams: %q", got)
			}
			cmds, text := replayKube(t, fs)
			if !slices.ContainsFunc(cmds, func(cmd schemas.Command) bool { return strings.HasPrefix(cmd.Text, "exec pods/"+c.k.Pod) }) ||
				!strings.Contains(text, "stdin: piped\\x0a") || !strings.Contains(text, "got piped\\x0a") {
				t.Fatalf("replay: %+v\n%s", cmds, text)
			}
		})
		t.Run("exec -it "+tr.name, func(t *testing.T) {
			sub := "real-tty-" + tr.name
			cfg := c.k.Kubeconfig(t, c.g.base+"/cluster", c.g.caPath(), c.g.token(sub, agents...))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.k.Kubectl, "--kubeconfig", cfg, "--cache-dir", cfg+".cache", "exec", "-it", c.k.Pod, "--", "sh")
			cmd.Env = append(os.Environ(), tr.env...)
			if err := resizeOnTerminal(t, cmd, "exit"); err != nil {
				t.Fatalf("kubectl exec -it: %v", err)
			}
			fs := c.g.frames.sessionOf(sub, kubernetes.KindResize)
			verifyChain(t, c.g.signer, fs)
			if !strings.Contains(kinds(fs)[kubernetes.KindResize], `"Width":100,"Height":40`) {
				t.Fatalf("resizes recorded: %q", kinds(fs)[kubernetes.KindResize])
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
			if !strings.Contains(cast.String(), `"width":80`) || !strings.Contains(cast.String(), `"height":24`) || !strings.Contains(cast.String(), `"r","100x40"`) || !strings.Contains(cast.String(), "40 100") {
				t.Fatalf("asciicast:\n%s", cast.String())
			}
		})
		t.Run("port-forward "+tr.name, func(t *testing.T) {
			sub := "real-pf-" + tr.name
			// Every port-forward of the cluster arrives at one address, which
			// another test may hold a moment.
			var ln net.Listener
			waitFor(t, "the port-forward target to be free", func() bool {
				var err error
				ln, err = net.Listen("tcp", c.k.PortForwardTarget)
				return err == nil
			})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "forwarded "+r.URL.Path)
			})}
			go srv.Serve(ln)
			defer srv.Close()
			cfg := c.k.Kubeconfig(t, c.g.base+"/cluster", c.g.caPath(), c.g.token(sub, agents...))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.k.Kubectl, "--kubeconfig", cfg, "--cache-dir", cfg+".cache", "port-forward", "--address", "127.0.0.1", "pod/"+c.k.Pod, ":8080")
			cmd.Env = append(os.Environ(), tr.env...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cancel()
					_ = cmd.Wait()
				}
			}
			defer stop()
			local := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) ->`)
				for sc.Scan() {
					if m := re.FindStringSubmatch(sc.Text()); m != nil {
						local <- m[1]
						break
					}
				}
				_, _ = io.Copy(io.Discard, stdout)
			}()
			var addr string
			select {
			case addr = <-local:
			case <-time.After(60 * time.Second):
				t.Fatal("kubectl port-forward did not start within 60s")
			}
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + addr + "/through-tapline")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "forwarded /through-tapline" {
				t.Fatalf("through port-forward: %q", body)
			}
			stop()
			fs := c.g.frames.sessionOf(sub, kubernetes.KindPortData)
			verifyChain(t, c.g.signer, fs)
			data := kinds(fs)[kubernetes.KindPortData]
			if !strings.Contains(data, "GET /through-tapline HTTP/1.1") || !strings.Contains(data, "forwarded /through-tapline") {
				t.Fatalf("recorded port data: %q", data)
			}
		})
	}
}

// allOf returns the frames of every complete session of sub, in order.
func (c *collector) allOf(sub string) []schemas.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []schemas.Frame
	for _, fs := range c.sessions {
		if fs[0].Seq == 0 && fs[0].Start != nil && fs[0].Start.Subject == sub && fs[len(fs)-1].Kind == schemas.KindSessionEnd {
			out = append(out, fs...)
		}
	}
	return out
}

func base64Of(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// followed is the output of a kubectl that runs until stopped.
type followed struct {
	mu   sync.Mutex
	out  bytes.Buffer
	stop func()
}

func (f *followed) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}

func (f *followed) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Contains(f.out.String(), s)
}

// follow starts kubectl (logs -f, get -w) through the gateway; stop ends it,
// and with it the session.
func (c *realCluster) follow(t *testing.T, sub string, groups []string, args ...string) *followed {
	t.Helper()
	cfg := c.k.Kubeconfig(t, c.g.base+"/cluster", c.g.caPath(), c.g.token(sub, groups...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, c.k.Kubectl, append([]string{"--kubeconfig", cfg, "--cache-dir", cfg + ".cache"}, args...)...)
	f := &followed{}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	t.Cleanup(f.stop)
	return f
}
