package httpproxy_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/kubernetes"
	"github.com/tapline/tapline/schemas/protocol"
)

const kubeSecretJSON = `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"app"},"data":{"password":"aHVudGVyMg=="}}`

// fakeAPIServer answers raw API paths and keeps the identity headers it saw.
type fakeAPIServer struct {
	mu   sync.Mutex
	seen []http.Header
}

func (a *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	h := r.Header.Clone()
	h.Set("X-Test-Path", r.URL.Path)
	a.seen = append(a.seen, h)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(kubeSecretJSON))
}

func (a *fakeAPIServer) headers() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.seen...)
}

// Stock kubectl through a kubernetes target: the API server sees the gateway's
// credentials and the agent impersonated, never the agent's token; kubectl --as
// is refused before it reaches the cluster; the session is recorded as the
// Kubernetes protocol, chained, and its Secret masks under the protocol's rules.
func TestKubernetesTargetKubectl(t *testing.T) {
	api := &fakeAPIServer{}
	up := startUpstream(t, api)
	g := startGateway(t, gatewayOpts{targets: fmt.Sprintf(`  - name: cluster
    protocol: kubernetes
    address: %q
    groups: [ops]
    http: {ca_file: %q, bearer: {env: KUBE_TOKEN}}
    kubernetes: {group_prefix: "tapline:"}
`, up.addr, up.caFile), env: map[string]string{"KUBE_TOKEN": "gateway-sa-token"}})
	tok := g.token("alice", "ops")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, g.base+"/cluster", base64.StdEncoding.EncodeToString(findCert(t, g.dir)), tok))

	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "60s"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// --raw takes the URI as is, without the server URL's path: the target's
	// prefix is part of it.
	out, err := kubectl("get", "--raw", "/cluster/api/v1/namespaces/app/secrets/db")
	if err != nil || !strings.Contains(out, `"name":"db"`) {
		t.Fatalf("kubectl get --raw: %v\n%s", err, out)
	}
	if out, err := kubectl("--as", "system:admin", "get", "--raw", "/cluster/api/v1/namespaces/app/secrets/db"); err == nil ||
		!strings.Contains(out, "Forbidden") || !strings.Contains(out, "Impersonate-* headers are not accepted") {
		t.Fatalf("kubectl --as: %v\n%s", err, out)
	}
	// kubectl may probe the server (its version) besides the call itself: every
	// request must carry the gateway's credentials and the agent's identity, and
	// the secret is read once (the --as attempt never reaches the cluster).
	reads := 0
	for _, h := range api.headers() {
		if h.Get("X-Test-Path") == "/api/v1/namespaces/app/secrets/db" {
			reads++
		}
		if h.Get("Authorization") != "Bearer gateway-sa-token" || h.Get("Impersonate-User") != "alice" ||
			strings.Join(h.Values("Impersonate-Group"), ",") != "tapline:ops" {
			t.Fatalf("API server saw Authorization %q, Impersonate-User %q, groups %q on %s",
				h.Get("Authorization"), h.Get("Impersonate-User"), h.Values("Impersonate-Group"), h.Get("X-Test-Path"))
		}
	}
	if reads != 1 {
		t.Fatalf("API server saw the secret read %d times, want 1 (the --as one must be refused)", reads)
	}

	fs := g.frames.session(bySubject("alice"))
	verifyChain(t, g.signer, fs)
	if fs[0].Protocol != schemas.Kubernetes {
		t.Fatalf("session recorded as %s, want %s", fs[0].Protocol, schemas.Kubernetes)
	}
	conv := kubernetes.Protocol{}.NewConversation()
	var cmds []schemas.Command
	for i := range fs {
		f := fs[i]
		f.Payload = conv.Mask(&f, noRules{}, protocol.Counts{})
		if bytes.Contains(f.Payload, []byte("aHVudGVyMg==")) || bytes.Contains(f.Payload, []byte(tok)) {
			t.Fatalf("frame %d (%s) keeps a secret after masking: %s", f.Seq, f.Kind, f.Payload)
		}
		cmds = append(cmds, conv.Stitch(&f, protocol.Limits{})...)
	}
	if !slices.ContainsFunc(cmds, func(c schemas.Command) bool {
		return c.Text == "get secrets/db -n app" && c.ExitStatus != nil && *c.ExitStatus == 200
	}) {
		t.Fatalf("no command \"get secrets/db -n app\" with status 200 in %+v", cmds)
	}
}

type noRules struct{}

func (noRules) Text(b []byte, _ protocol.Style, _ protocol.Counts) []byte { return b }
func (noRules) Column(string) bool                                        { return false }
func (noRules) Param(int) bool                                            { return false }
func (noRules) Header(string) bool                                        { return false }
func (noRules) JSONField(string) bool                                     { return false }
