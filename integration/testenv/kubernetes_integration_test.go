package testenv_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

// The test cluster as the Kubernetes edge's tests use it, without the edge: the
// gateway's identity impersonating an agent, RBAC, exec, logs and port-forward
// through kwok.
func TestKubernetes(t *testing.T) {
	k := testenv.Kubernetes(t)
	admin := k.Kubeconfig(t, k.Server, k.CA, k.AdminToken)
	gw := k.Kubeconfig(t, k.Server, k.CA, k.GatewayToken)
	kubectl := func(t *testing.T, cfg, stdin string, args ...string) string {
		t.Helper()
		out, errOut, err := k.Run(cfg, stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	// Flags first: after "--" they would be the command's.
	asAgent := []string{"--as", "alice", "--as-group", k.AgentGroup}

	t.Run("version", func(t *testing.T) {
		out := kubectl(t, admin, "", "version")
		if !regexp.MustCompile(`Server Version: v1\.\d+\.\d+`).MatchString(out) {
			t.Errorf("kubectl version:\n%s", out)
		}
	})
	t.Run("impersonation", func(t *testing.T) {
		out := kubectl(t, gw, "", append([]string{"auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"}, asAgent...)...)
		if !strings.HasPrefix(out, "alice ") || !strings.Contains(out, k.AgentGroup) {
			t.Errorf("whoami as the agent: %q", out)
		}
		// The gateway's own identity may do nothing but impersonate.
		_, errOut, err := k.Run(gw, "", "get", "pods")
		if err == nil || !strings.Contains(errOut, "forbidden") {
			t.Errorf("gateway without impersonation listed pods: %v %s", err, errOut)
		}
		_, errOut, err = k.Run(gw, "", "get", "pods", "--as", "mallory", "--as-group", "nobody")
		if err == nil || !strings.Contains(errOut, `User "mallory" cannot list resource "pods"`) {
			t.Errorf("an identity without a role: %v %s", err, errOut)
		}
	})
	t.Run("objects", func(t *testing.T) {
		name := fmt.Sprintf("cm-%d", time.Now().UnixNano())
		kubectl(t, gw, "", append([]string{"create", "configmap", name, "--from-literal", "k=v"}, asAgent...)...)
		if out := kubectl(t, gw, "", append([]string{"get", "configmap", name, "-o", "jsonpath={.data.k}"}, asAgent...)...); out != "v" {
			t.Errorf("configmap data %q", out)
		}
		kubectl(t, gw, "", append([]string{"delete", "configmap", name}, asAgent...)...)
	})
	t.Run("exec", func(t *testing.T) {
		out := kubectl(t, gw, "piped\n", append(asAgent, "exec", "-i", k.Pod, "--", "sh", "-c", "echo out; read l; echo got $l")...)
		if out != "out\ngot piped\n" {
			t.Errorf("exec output %q", out)
		}
	})
	t.Run("logs", func(t *testing.T) {
		line := fmt.Sprintf("log line %d", time.Now().UnixNano())
		k.AppendLog(t, "stdout", line)
		if out := kubectl(t, gw, "", append([]string{"logs", k.Pod}, asAgent...)...); !strings.Contains(out, line) {
			t.Errorf("logs lack %q:\n%s", line, out)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		ln, err := net.Listen("tcp", k.PortForwardTarget)
		if err != nil {
			t.Fatalf("listen on the port-forward target: %v", err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "forwarded "+r.URL.Path)
		})}
		go srv.Serve(ln)
		defer srv.Close()

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, k.Kubectl, append([]string{"--kubeconfig", gw, "port-forward", "pod/" + k.Pod, ":8080"}, asAgent...)...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		local := forwardedPort(t, stdout)
		resp, err := http.Get("http://" + local + "/through")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "forwarded /through" {
			t.Errorf("through port-forward: %q", body)
		}
	})
}

// forwardedPort reads kubectl port-forward's "Forwarding from 127.0.0.1:N -> 8080".
func forwardedPort(t *testing.T, r io.Reader) string {
	t.Helper()
	re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, r)
			return m[1]
		}
	}
	t.Fatalf("kubectl port-forward printed no local port (%v)", sc.Err())
	return ""
}
