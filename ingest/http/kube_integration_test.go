package httpproxy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
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
	a.note(r)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(kubeSecretJSON))
}

// note keeps the identity headers of a request.
func (a *fakeAPIServer) note(r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := r.Header.Clone()
	h.Set("X-Test-Path", r.URL.Path)
	a.seen = append(a.seen, h)
}

func (a *fakeAPIServer) headers() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.seen...)
}

// kubeGateway is a gateway with one kubernetes target, "cluster", in front of
// an API server at addr (with its CA), and what runs stock kubectl against it.
type kubeGateway struct {
	*itGateway
	t *testing.T
}

func startKubeGateway(t *testing.T, addr, caFile string, o gatewayOpts) *kubeGateway {
	t.Helper()
	o.targets = fmt.Sprintf(`  - name: cluster
    protocol: kubernetes
    address: %q
    groups: [ops]
    http: {ca_file: %q, bearer: {env: KUBE_TOKEN}}
    kubernetes: {group_prefix: "tapline:"}
`, addr, caFile)
	o.env = map[string]string{"KUBE_TOKEN": "gateway-sa-token"}
	return &kubeGateway{itGateway: startGateway(t, o), t: t}
}

// kubeconfig writes a kubeconfig for the gateway's cluster target with token
// (a user name and password when empty: no token at all).
func (g *kubeGateway) kubeconfig(token string) string {
	g.t.Helper()
	user := "{username: alice, password: hunter2}"
	if token != "" {
		user = fmt.Sprintf("{token: %q}", token)
	}
	path := filepath.Join(g.t.TempDir(), "kubeconfig")
	writeFile(g.t, path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: u, user: %s}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: app}}]
current-context: c
`, g.base+"/cluster", base64.StdEncoding.EncodeToString(findCert(g.t, g.dir)), user))
	return path
}

// kubectl runs stock kubectl with kubeconfig; env adds variables (such as
// KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false) and stdin, if not nil, is piped in.
func kubectl(kubeconfig string, env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(filepath.Dir(kubeconfig), "cache"),
		"--request-timeout", "60s"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &out, stdin
	err := cmd.Run()
	return out.String(), err
}

func needKubectl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kubectl not found")
		}
		t.Skip("kubectl not found")
	}
}

// Stock kubectl through a kubernetes target: the API server sees the gateway's
// credentials and the agent impersonated, never the agent's token; kubectl --as
// is refused before it reaches the cluster; the session is recorded as the
// Kubernetes protocol, chained, and its Secret masks under the protocol's rules.
func TestKubernetesTargetKubectl(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	api := &fakeAPIServer{}
	up := startUpstream(t, api)
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{})
	tok := g.token("alice", "ops")
	kc := g.kubeconfig(tok)
	kubectl := func(args ...string) (string, error) { return kubectl(kc, nil, nil, args...) }
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

// The gateway's own refusals reach kubectl as Status objects, which it prints
// as it prints the cluster's: no token or a bad one, a target the agent may
// not use, --as, the API server down or its certificate untrusted, and Kafka
// down, where nothing reaches the cluster.
func TestKubernetesRefusalsAsStatus(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	api := &fakeAPIServer{}
	up := startUpstream(t, api)
	broker := testenv.PrivateKafka(t)
	g := startKubeGateway(t, up.addr, up.caFile, gatewayOpts{brokers: broker.Brokers(), produceTimeout: 3 * time.Second})
	const path = "/cluster/api/v1/namespaces/app/secrets/db"
	cases := []struct {
		name  string
		token string
		args  []string
		want  string
	}{
		{"no token", "", nil, "error: You must be logged in to the server (tapline: an OIDC token is required"},
		{"bad token", "not-a-token", nil, "error: You must be logged in to the server (tapline: "},
		{"forbidden target", g.token("bob", "dev"), nil, "Error from server (Forbidden): tapline: "},
		{"impersonation", g.token("alice", "ops"), []string{"--as", "system:admin"}, "Error from server (Forbidden): tapline: Impersonate-* headers are not accepted"},
	}
	for _, c := range cases {
		out, err := kubectl(g.kubeconfig(c.token), nil, nil, append(c.args, "get", "--raw", path)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: kubectl said (err %v):\n%s\nwant %q", c.name, err, out, c.want)
		}
	}
	if n := len(api.headers()); n != 0 {
		t.Fatalf("the API server saw %d requests from refused agents", n)
	}

	// A fresh broker may take a while to take its first records.
	kc := g.kubeconfig(g.token("alice", "ops"))
	waitFor(t, "Kafka to take frames", func() bool {
		_, err := kubectl(kc, nil, nil, "get", "--raw", path)
		return err == nil
	})
	broker.Stop()
	before := len(api.headers())
	out, err := kubectl(kc, nil, nil, "get", "--raw", path)
	if err == nil || !strings.Contains(out, "Error from server (ServiceUnavailable): tapline: recording unavailable") {
		t.Errorf("Kafka down: kubectl said (err %v):\n%s", err, out)
	}
	if n := len(api.headers()) - before; n != 0 {
		t.Fatalf("the API server saw %d requests while Kafka was down", n)
	}
	broker.Start()
}

// An API server that is down, or whose certificate the gateway does not
// trust, is a 503 ServiceUnavailable Status naming the cause.
func TestKubernetesAPIServerUnavailable(t *testing.T) {
	skipShort(t)
	needKubectl(t)
	up := startUpstream(t, &fakeAPIServer{})
	for _, c := range []struct{ name, addr, ca, want string }{
		{"down", localAddr(t), up.caFile, "cannot connect"},
		{"untrusted", up.addr, otherCA(t), "its TLS certificate is not trusted"},
	} {
		g := startKubeGateway(t, c.addr, c.ca, gatewayOpts{})
		out, err := kubectl(g.kubeconfig(g.token("alice", "ops")), nil, nil, "get", "--raw", "/cluster/api/v1/namespaces/app/pods")
		if err == nil || !strings.Contains(out, "Error from server (ServiceUnavailable): tapline: target cluster: "+c.want) {
			t.Errorf("%s: kubectl said (err %v):\n%s", c.name, err, out)
		}
	}
}

// otherCA writes a CA certificate that signed nothing the test serves.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return path
}
