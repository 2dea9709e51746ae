package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Kube is the test Kubernetes cluster (integration/scripts/kubernetes.sh): a
// real kube-apiserver on etcd, with kwok as its one node.
type Kube struct {
	Server string // https://127.0.0.1:PORT
	CA     string // CA file of the API server's (and the node's) certificates
	// AdminToken is system:masters; GatewayToken is the identity a gateway
	// uses (GatewayUser), which may only impersonate.
	AdminToken, GatewayToken, GatewayUser string
	Kubectl                               string // kubectl built with the server
	// Namespace and Pod name a running pod whose exec runs local commands
	// (in the node's folder) and whose logs and attach read LogFile.
	Namespace, Pod, LogFile string
	// AgentGroup may use pods, exec, attach, logs, port-forward, secrets and
	// config maps in Namespace; other groups may do nothing.
	AgentGroup string
	// PortForwardTarget is where every port-forward to a pod arrives; a test
	// listens there.
	PortForwardTarget string
	AuditLog, Log     string // the API server's audit log and its own log
}

// Kubernetes returns the test cluster.
func Kubernetes(t testing.TB) Kube {
	t.Helper()
	v := need(t, "kubernetes", "TAPLINE_KUBE_SERVER", "TAPLINE_KUBE_CA", "TAPLINE_KUBE_ADMIN_TOKEN",
		"TAPLINE_KUBE_GATEWAY_TOKEN", "TAPLINE_KUBE_GATEWAY_USER", "TAPLINE_KUBECTL", "TAPLINE_KUBE_NAMESPACE",
		"TAPLINE_KUBE_POD", "TAPLINE_KUBE_LOG_FILE", "TAPLINE_KUBE_AGENT_GROUP", "TAPLINE_KUBE_PORTFORWARD_TARGET",
		"TAPLINE_KUBE_AUDIT_LOG", "TAPLINE_KUBE_LOG")
	k := Kube{Server: v[0], CA: v[1], AdminToken: v[2], GatewayToken: v[3], GatewayUser: v[4], Kubectl: v[5],
		Namespace: v[6], Pod: v[7], LogFile: v[8], AgentGroup: v[9], PortForwardTarget: v[10], AuditLog: v[11], Log: v[12]}
	reachable(t, "kubernetes", strings.TrimPrefix(k.Server, "https://"), "TAPLINE_KUBE_LOG")
	return k
}

// Kubeconfig writes a kubeconfig for server (its CA file, a bearer token, the
// test namespace) into the test's temporary folder and returns its path.
func (k Kube) Kubeconfig(t testing.TB, server, caFile, token string) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u
  user: {token: %q}
contexts:
- name: c
  context: {cluster: c, user: u, namespace: %q}
current-context: c
`, server, caFile, token, k.Namespace)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs kubectl with a kubeconfig and returns its stdout and stderr; err is
// its exit error. It gives up after a minute.
func (k Kube) Run(kubeconfig, stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.Kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+filepath.Join(filepath.Dir(kubeconfig), "cache"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// AppendLog adds a line to the test pod's log in CRI format, as `kubectl logs`
// (and attach) of the pod show it.
func (k Kube) AppendLog(t testing.TB, stream, line string) {
	t.Helper()
	f, err := os.OpenFile(k.LogFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, line); err != nil {
		t.Fatal(err)
	}
}
