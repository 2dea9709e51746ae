package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/tapline/tapline/ingest/gateway"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/processors/runner"
	"github.com/tapline/tapline/query/api"
	"github.com/tapline/tapline/query/server"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/sink"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to a fresh typed object for strict decoding.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
	"kafka.strimzi.io/v1beta2/KafkaTopic":    func() any { return &kafkaTopic{} },
	"kafka.strimzi.io/v1beta2/KafkaUser":     func() any { return &kafkaUser{} },
}

// The subset of Strimzi's CRDs the topic definitions use.
type kafkaTopic struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Partitions int               `json:"partitions"`
		Replicas   int               `json:"replicas"`
		Config     map[string]string `json:"config"`
	} `json:"spec"`
}

type kafkaUser struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string `json:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `json:"type"`
					Name        string `json:"name,omitempty"`
					PatternType string `json:"patternType,omitempty"`
				} `json:"resource"`
				Operations []string `json:"operations"`
			} `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

type objectMeta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

func documents(t *testing.T, pattern string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests match %s", pattern)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			out[fmt.Sprintf("%s#%d", f, i)] = doc
		}
	}
	return out
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func decodeStrict(t *testing.T, name string, doc []byte) any {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	mk, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		t.Fatalf("%s: unexpected %s/%s", name, head.APIVersion, head.Kind)
	}
	obj := mk()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return obj
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	var deployments []*appsv1.Deployment
	seen := map[string]bool{}
	for name, doc := range documents(t, "kubernetes/*.yaml") {
		obj := decodeStrict(t, name, doc)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			deployments = append(deployments, o)
			seen["Deployment/"+o.Name] = true
		case *autoscalingv2.HorizontalPodAutoscaler:
			seen["HPA/"+o.Spec.ScaleTargetRef.Name] = true
		case *policyv1.PodDisruptionBudget:
			seen["PDB/"+o.Name] = true
		case *networkingv1.NetworkPolicy:
			seen["NetworkPolicy"] = true
		case *corev1.Service:
			seen["Service/"+o.Name] = true
		}
	}
	for _, want := range []string{"Deployment/tapline-gateway", "Deployment/tapline-process", "Deployment/tapline-sink",
		"Deployment/tapline-query", "HPA/tapline-gateway", "PDB/tapline-gateway", "NetworkPolicy",
		"Service/tapline-gateway", "Service/tapline-query"} {
		if !seen[want] {
			t.Errorf("missing %s", want)
		}
	}
	for _, d := range deployments {
		sel := d.Spec.Selector.MatchLabels
		for k, v := range sel {
			if d.Spec.Template.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match its pod template", d.Name, k, v)
			}
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if len(c.Args) == 0 || !isSubcommand(c.Args[0]) {
				t.Errorf("%s: container runs %v, not a tapline role", d.Name, c.Args)
			}
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("%s: must not allow privilege escalation", d.Name)
			}
		}
		if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: must run as non-root", d.Name)
		}
	}
}

func isSubcommand(s string) bool {
	return s == "gateway" || s == "process" || s == "sink" || s == "query"
}

func TestKafkaTopicsDefineRetentionAndRestrictRawTopic(t *testing.T) {
	topics := map[string]*kafkaTopic{}
	var writers, deadLetterReaders []string
	for name, doc := range documents(t, "kafka/*.yaml") {
		switch o := decodeStrict(t, name, doc).(type) {
		case *kafkaTopic:
			topics[o.Metadata.Name] = o
		case *kafkaUser:
			for _, acl := range o.Spec.Authorization.ACLs {
				if acl.Resource.Name == "tapline.frames.raw" && contains(acl.Operations, "Write") {
					writers = append(writers, o.Metadata.Name)
				}
				// The dead-letter topic holds unmasked payloads, like the raw topic.
				dl := "tapline.frames.deadletter"
				matches := acl.Resource.Name == dl || (acl.Resource.PatternType == "prefix" && strings.HasPrefix(dl, acl.Resource.Name))
				if acl.Resource.Type == "topic" && matches && contains(acl.Operations, "Read") {
					deadLetterReaders = append(deadLetterReaders, o.Metadata.Name)
				}
			}
		}
	}
	for _, name := range []string{"tapline.frames.raw", "tapline.frames", "tapline.commands", "tapline.sessions", "tapline.audit", "tapline.frames.deadletter"} {
		tp, ok := topics[name]
		if !ok {
			t.Errorf("topic %s not defined", name)
			continue
		}
		if tp.Spec.Config["min.insync.replicas"] == "" || tp.Spec.Config["cleanup.policy"] == "" {
			t.Errorf("%s: needs min.insync.replicas and cleanup.policy", name)
		}
		if tp.Spec.Replicas < 3 {
			t.Errorf("%s: replicas %d < 3", name, tp.Spec.Replicas)
		}
	}
	if raw := topics["tapline.frames.raw"]; raw != nil && raw.Spec.Config["retention.ms"] == "" {
		t.Error("raw topic must have a bounded retention")
	}
	if dl := topics["tapline.frames.deadletter"]; dl != nil && dl.Spec.Config["retention.ms"] == "" {
		t.Error("dead-letter topic must have a bounded retention")
	}
	if strings.Join(deadLetterReaders, ",") != "tapline-process" {
		t.Errorf("only the processors may read the dead-letter topic, readers: %v", deadLetterReaders)
	}
	if strings.Join(writers, ",") != "tapline-gateway" {
		t.Errorf("only the gateway may write raw frames, writers: %v", writers)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// ---- compose.yaml ----

// repoRoot is the module root; tests run in deploy/.
const repoRoot = ".."

// composeEnv is what an operator sets before `docker compose up`.
var composeEnv = map[string]string{"TAPLINE_OIDC_ISSUER": "https://login.example.test/realms/infra"}

// roles are the tapline subcommands that run as services.
var roles = []string{"gateway", "process", "sink", "query"}

// The subset of the compose specification that compose.yaml uses. The file keeps
// to these forms (short volume syntax, lists for secrets and env_file); the full
// schema is checked by `docker compose config`.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	EnvFile     []string          `yaml:"env_file"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	Tmpfs       []string          `yaml:"tmpfs"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Restart string `yaml:"restart"`
}

// role is the tapline subcommand a service runs, or "" for other images.
func (s composeService) role() string {
	if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" || len(s.Command) == 0 {
		return ""
	}
	return s.Command[0]
}

var interpRe = regexp.MustCompile(`\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// interpolate does compose's variable substitution: $VAR, ${VAR}, ${VAR:-default},
// ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$.
func interpolate(s string, env map[string]string) (string, error) {
	var errs []string
	out := interpRe.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpRe.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		if name == "" {
			name = sub[4]
		}
		v, set := env[name]
		switch {
		case op == ":-" && v == "", op == "-" && !set:
			return arg
		case op == ":?" && v == "", op == "?" && !set:
			errs = append(errs, fmt.Sprintf("required variable %s is missing a value: %s", name, arg))
		}
		return v
	})
	if len(errs) > 0 {
		return "", errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

func loadCompose(t *testing.T, env map[string]string) *composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := interpolate(string(raw), env)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	c := &composeFile{}
	if err := yamlv3.Unmarshal([]byte(text), c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

func TestComposeRequiresIssuer(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = interpolate(string(raw), map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "TAPLINE_OIDC_ISSUER") || !strings.Contains(err.Error(), "docs/deploy.md") {
		t.Fatalf("without TAPLINE_OIDC_ISSUER: %v; want an error naming the variable and the doc", err)
	}
	c := loadCompose(t, composeEnv)
	if got := c.Services["gateway"].Environment["TAPLINE_OIDC_ISSUER"]; got != composeEnv["TAPLINE_OIDC_ISSUER"] {
		t.Errorf("gateway gets issuer %q", got)
	}
	if got := flagValue(c.Services["query"].Command, "--oidc-issuer"); got != composeEnv["TAPLINE_OIDC_ISSUER"] {
		t.Errorf("query gets issuer %q", got)
	}
	if got := c.Services["gateway"].Environment["TAPLINE_OIDC_AUDIENCE"]; got != "tapline-gateway" {
		t.Errorf("gateway audience defaults to %q, want tapline-gateway", got)
	}
	// A token stolen from one role must not open the other.
	if got := flagValue(c.Services["query"].Command, "--oidc-audience"); got != "tapline-query" {
		t.Errorf("query audience defaults to %q, want tapline-query", got)
	}
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$`)

func TestComposeServicesAreRunnable(t *testing.T) {
	c := loadCompose(t, composeEnv)
	for _, want := range []string{"kafka", "kafka-topics", "clickhouse", "postgres", "demo-sshd", "gateway", "process", "sink", "query"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	seenRoles := map[string]bool{}
	for name, s := range c.Services {
		switch {
		case s.Build != nil:
			ctx := filepath.Join(repoRoot, s.Build.Context)
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s: %v", name, s.Build.Context, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
				t.Errorf("%s: dockerfile: %v", name, err)
			}
		case !pinnedImage.MatchString(s.Image) || strings.HasSuffix(s.Image, ":latest"):
			t.Errorf("%s: image %q is not pinned to a tag or digest", name, s.Image)
		}
		for _, f := range s.EnvFile {
			if _, err := os.Stat(filepath.Join(repoRoot, f)); err != nil {
				t.Errorf("%s: env_file: %v", name, err)
			}
		}
		serviceMounts(t, c, name, map[string]string{}) // fails on missing files, secrets, volumes
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown service %s", name, dep)
			case d.Condition == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			case d.Condition == "service_completed_successfully" && target.Restart != "no":
				t.Errorf("%s waits for one-shot %s, which must have restart: \"no\"", name, dep)
			case d.Condition != "service_healthy" && d.Condition != "service_completed_successfully" && d.Condition != "service_started":
				t.Errorf("%s: depends_on %s: condition %q", name, dep, d.Condition)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback; the demo secrets are not fit for that", name, p)
			}
		}
		if s.Build != nil && s.Build.Dockerfile == "deploy/Dockerfile" {
			role := s.role()
			checkRoleArgs(t, name, s.Command)
			seenRoles[role] = true
		}
	}
	for _, r := range roles {
		if !seenRoles[r] {
			t.Errorf("no service runs tapline %s", r)
		}
	}
	if img := c.Services["clickhouse"].Image; !clickhouseAtLeast(img, 24, 8) {
		t.Errorf("clickhouse image %s: the store needs 24.8 or newer", img)
	}
	if img := c.Services["postgres"].Image; img != "postgres:15" {
		t.Errorf("postgres image %s, want postgres:15", img)
	}
	if img := c.Services["kafka"].Image; !strings.HasPrefix(img, "apache/kafka:") || c.Services["kafka-topics"].Image != img {
		t.Errorf("kafka %s and the topics job %s: want the same apache/kafka image", img, c.Services["kafka-topics"].Image)
	}
}

func clickhouseAtLeast(image string, major, minor int) bool {
	m := regexp.MustCompile(`^clickhouse/clickhouse-server:(\d+)\.(\d+)`).FindStringSubmatch(image)
	if m == nil {
		return false
	}
	ma, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	return ma > major || ma == major && mi >= minor
}

// checkRoleArgs checks that args name a tapline role whose source file exists and
// use only flags that subcommand declares.
func checkRoleArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 || !slices.Contains(roles, args[0]) {
		t.Errorf("%s: runs %v, not a tapline role %v", where, args, roles)
		return
	}
	flags := subcommandFlags(t, args[0])
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			t.Errorf("%s: tapline %s has no flag --%s", where, args[0], name)
		}
	}
}

var flagDeclRe = regexp.MustCompile(`(?:\.(?:String|Bool|Int|Int64|Duration|StringArray|StringSlice|Float64)P?\(\s*|Var\(\s*&[\w.]+,\s*)"([a-z][a-z0-9-]*)"`)

// subcommandFlags reads the flags cmd/tapline/<sub>.go declares.
func subcommandFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "tapline", sub+".go"))
	if err != nil {
		t.Fatalf("tapline %s: %v", sub, err)
	}
	if !bytes.Contains(src, []byte("register(")) || !bytes.Contains(src, []byte(`Use:   "`+sub)) {
		t.Fatalf("cmd/tapline/%s.go does not register a %q subcommand", sub, sub)
	}
	// Roles add the flags they share (--config, --log-format, --log-level) with
	// addRoleFlags, declared in flags.go.
	if bytes.Contains(src, []byte("addRoleFlags(")) {
		shared, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "tapline", "flags.go"))
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, shared...)
	}
	flags := map[string]bool{}
	for _, m := range flagDeclRe.FindAllSubmatch(src, -1) {
		flags[string(m[1])] = true
	}
	if !flags["config"] {
		t.Fatalf("found no --config flag in cmd/tapline/%s.go; the flag pattern is out of date", sub)
	}
	return flags
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func TestComposeStartOrder(t *testing.T) {
	c := loadCompose(t, composeEnv)
	want := map[string]map[string]string{
		"kafka-topics": {"kafka": "service_healthy"},
		"demo-sshd":    {"demo-keys": "service_completed_successfully"},
		"gateway": {"kafka-topics": "service_completed_successfully", "demo-keys": "service_completed_successfully",
			"postgres": "service_healthy", "demo-sshd": "service_healthy"},
		"process": {"kafka-topics": "service_completed_successfully"},
		"sink":    {"kafka-topics": "service_completed_successfully", "clickhouse": "service_healthy"},
		"query":   {"clickhouse": "service_healthy", "demo-keys": "service_completed_successfully"},
	}
	for svc, deps := range want {
		for dep, cond := range deps {
			if got := c.Services[svc].DependsOn[dep].Condition; got != cond {
				t.Errorf("%s must wait for %s (%s), has %q", svc, dep, cond, got)
			}
		}
	}
	topics := c.Services["kafka-topics"]
	mounts := serviceMounts(t, c, "kafka-topics", map[string]string{})
	script := ""
	for _, a := range append(append([]string{}, topics.Entrypoint...), topics.Command...) {
		if local, ok := resolve(a, mounts); ok {
			script = local
		}
	}
	if filepath.Clean(script) != filepath.Join(repoRoot, "deploy", "kafka", "topics.sh") {
		t.Errorf("kafka-topics runs %v %v, not deploy/kafka/topics.sh", topics.Entrypoint, topics.Command)
	}
	if args := topics.Command; len(args) != 2 || hostOf(args[0]) != "kafka" || args[1] != "1" {
		t.Errorf("kafka-topics args %v, want [kafka:PORT 1]", args)
	}
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// A mount maps a path inside a container to a file or directory here.
type mount struct {
	target string
	local  string
	// standIn: the directory stands for a secret that is not shipped; files the
	// configuration names in it are created as stand-ins.
	standIn bool
}

// serviceMounts lists a compose service's bind mounts, named volumes (each a
// directory from vols, created on first use), secrets and tmpfs mounts, failing the
// test for a bind source or secret file that does not exist or an undeclared volume.
func serviceMounts(t *testing.T, c *composeFile, name string, vols map[string]string) []mount {
	t.Helper()
	s := c.Services[name]
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("%s: volume %q: want SOURCE:TARGET[:MODE]", name, v)
			continue
		}
		src, dst := parts[0], parts[1]
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			local := filepath.Join(repoRoot, src)
			if _, err := os.Stat(local); err != nil {
				t.Errorf("%s: bind mount: %v", name, err)
			}
			out = append(out, mount{target: dst, local: local})
			continue
		}
		if _, ok := c.Volumes[src]; !ok {
			t.Errorf("%s: volume %s is not declared under volumes:", name, src)
		}
		if vols[src] == "" {
			vols[src] = t.TempDir()
		}
		out = append(out, mount{target: dst, local: vols[src]})
	}
	for _, sec := range s.Secrets {
		def, ok := c.Secrets[sec]
		if !ok {
			t.Errorf("%s: secret %s is not declared under secrets:", name, sec)
			continue
		}
		local := filepath.Join(repoRoot, def.File)
		if _, err := os.Stat(local); err != nil {
			t.Errorf("%s: secret %s: %v", name, sec, err)
		}
		out = append(out, mount{target: "/run/secrets/" + sec, local: local})
	}
	for _, tmp := range s.Tmpfs {
		out = append(out, mount{target: tmp, local: t.TempDir()})
	}
	return out
}

// resolve maps a container path to its local stand-in through mounts (the longest
// matching mount wins).
func resolve(p string, mounts []mount) (string, bool) {
	best := -1
	for i, m := range mounts {
		if (p == m.target || strings.HasPrefix(p, strings.TrimSuffix(m.target, "/")+"/")) &&
			(best < 0 || len(m.target) > len(mounts[best].target)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	m := mounts[best]
	return filepath.Join(m.local, strings.TrimPrefix(p, m.target)), true
}

var absPathRe = regexp.MustCompile(`(^|[\s"'\[,])(/[^\s"'\],#]+)`)

// localize rewrites the absolute paths in a configuration file to where their
// mounts are here, so that the role's loader can open them. Paths under no mount
// stay as they are (and fail the loader's checks if it opens them).
func localize(t *testing.T, text string, mounts []mount) string {
	t.Helper()
	return absPathRe.ReplaceAllStringFunc(text, func(m string) string {
		sub := absPathRe.FindStringSubmatch(m)
		local, ok := resolve(sub[2], mounts)
		if !ok {
			return m
		}
		for _, mt := range mounts {
			if mt.standIn && strings.HasPrefix(local, mt.local+string(filepath.Separator)) {
				writeStandIn(t, local)
			}
		}
		return sub[1] + local
	})
}

// writeStandIn creates a file for a secret that is not shipped: a PEM certificate
// where one is expected (CA bundles are parsed), text otherwise.
func writeStandIn(t *testing.T, path string) {
	t.Helper()
	content := []byte("stand-in for a secret\n")
	switch {
	case strings.HasSuffix(path, ".crt") || strings.HasSuffix(path, ".pem"):
		content = testCertPEM(t)
	case strings.HasSuffix(path, ".pub"): // trusted signing keys are parsed at start
		_, key, _ := ed25519.GenerateKey(nil)
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		content = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testCertPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stand-in CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// serviceEnv is a compose service's environment: env_file entries, then environment.
func serviceEnv(t *testing.T, s composeService) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, f := range s.EnvFile {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[k] = v
			}
		}
	}
	maps.Copy(env, s.Environment)
	return env
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// demoKeys runs deploy/compose/demo-keys.sh the way the demo-keys service does,
// with each of its volumes a directory in vols, and returns what it printed.
func demoKeys(t *testing.T, c *composeFile, vols map[string]string) string {
	t.Helper()
	for _, tool := range []string{"ssh-keygen", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: cannot generate the demo keys", tool)
		}
	}
	s := c.Services["demo-keys"]
	mounts := serviceMounts(t, c, "demo-keys", vols)
	if len(s.Entrypoint) != 2 {
		t.Fatalf("demo-keys entrypoint %v: want [sh SCRIPT]", s.Entrypoint)
	}
	script, ok := resolve(s.Entrypoint[1], mounts)
	if !ok {
		t.Fatalf("demo-keys runs %s, which is not mounted", s.Entrypoint[1])
	}
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	// The script's output directories default to its mount points: NAME=${NAME:-/path}.
	env := append(os.Environ(), fmt.Sprintf("GATEWAY_UID=%d", os.Getuid()))
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+)=\$\{[A-Z_]+:-(/[^}]+)\}$`).FindAllStringSubmatch(string(src), -1) {
		dir, ok := resolve(m[2], mounts)
		if !ok {
			t.Fatalf("demo-keys.sh writes %s=%s, which is not a volume of the demo-keys service", m[1], m[2])
		}
		env = append(env, m[1]+"="+dir)
	}
	var out []byte
	for range 2 { // the second run must keep what the first generated
		cmd := exec.Command("sh", script)
		cmd.Env = env
		if out, err = cmd.CombinedOutput(); err != nil {
			t.Fatalf("demo-keys.sh: %v\n%s", err, out)
		}
	}
	return string(out)
}

func TestComposeRoleConfigsLoad(t *testing.T) {
	c := loadCompose(t, composeEnv)
	vols := map[string]string{}
	printed := demoKeys(t, c, vols)
	var signing ed25519.PublicKey
	var trusted []ed25519.PublicKey
	for name, s := range c.Services {
		role := s.role()
		if role == "" {
			continue
		}
		mounts := serviceMounts(t, c, name, vols)
		env := serviceEnv(t, s)
		cfgPath, ok := resolve(flagValue(s.Command, "--config"), mounts)
		if !ok {
			t.Errorf("%s: --config %q is not mounted", name, flagValue(s.Command, "--config"))
			continue
		}
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		text := []byte(localize(t, string(raw), mounts))
		var listens, hosts []string
		switch role {
		case "gateway":
			cfg, err := gateway.Parse(text, lookupIn(env))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if cfg.OIDC.Issuer != composeEnv["TAPLINE_OIDC_ISSUER"] {
				t.Errorf("gateway issuer %q: the environment override did not apply", cfg.OIDC.Issuer)
			}
			checkGatewayKeys(t, c, cfg, vols)
			if _, err := os.Stat(cfg.SigningKey); err != nil {
				t.Fatalf("gateway: the signing key is not generated by demo-keys: %v", err)
			}
			key, err := keyfile.LoadOrCreate(cfg.SigningKey)
			if err != nil {
				t.Fatal(err)
			}
			signing = key.Public().(ed25519.PublicKey)
			listens = []string{cfg.Postgres.Listen, cfg.SSH.Listen, cfg.Metrics.Listen}
			hosts = cfg.Kafka.Brokers
			for _, tg := range cfg.Targets {
				hosts = append(hosts, tg.Address)
			}
		case "process":
			cfg, err := runner.Parse(text, lookupIn(env))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			hosts = cfg.Kafka.Brokers
		case "sink":
			cfg := &clickhouse.SinkFile{}
			decodeKnown(t, name, text, cfg)
			checkStoreConfig(t, name, cfg.ClickHouse.ServerConfig, cfg.ClickHouse.Config, env)
			hosts = append(cfg.Kafka.Brokers, cfg.ClickHouse.Addr...)
		case "query":
			cfg := &api.FileConfig{}
			decodeKnown(t, name, text, cfg)
			checkStoreConfig(t, name, cfg.ClickHouse.ServerConfig, cfg.ClickHouse.Config, env)
			if iss := cmpOr(flagValue(s.Command, "--oidc-issuer"), cfg.OIDC.Issuer); !strings.HasPrefix(iss, "https://") {
				t.Errorf("%s: issuer %q", name, iss)
			}
			for _, k := range cfg.TrustedGatewayKeys {
				pub, err := verify.ParsePublicKey(k)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				trusted = append(trusted, pub)
			}
			listens = []string{cfg.Listen}
			hosts = cfg.ClickHouse.Addr
		}
		for _, h := range hosts {
			if _, ok := c.Services[hostOf(h)]; !ok {
				t.Errorf("%s: %s is not a compose service", name, h)
			}
		}
		checkPublishedPorts(t, name, s.Ports, listens)
	}
	if len(trusted) != 1 || !signing.Equal(trusted[0]) {
		t.Errorf("the query API trusts %x, the gateway signs with %x", trusted, signing)
	}
	// The key demo-keys prints is the one to put in the processors' trusted_gateway_keys.
	if !strings.Contains(printed, hex.EncodeToString(signing)) {
		t.Errorf("demo-keys printed %q, not the signing key %x", printed, signing)
	}
}

// checkGatewayKeys checks the compose gateway's keys against the demo targets: the
// sshd trusts the gateway's key and the gateway knows the sshd's host key; the
// Postgres init script creates the login the gateway uses, with the same secret.
func checkGatewayKeys(t *testing.T, c *composeFile, cfg *gateway.Config, vols map[string]string) {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(cfg.Postgres.TLSCert, cfg.Postgres.TLSKey); err != nil {
		t.Errorf("gateway TLS: %v", err)
	}
	if err := parseSSHKeyFile(cfg.SSH.HostKey); err != nil {
		t.Errorf("gateway host key: %v", err)
	}
	sshdMounts := serviceMounts(t, c, "demo-sshd", vols)
	sshdConf, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "demo-sshd", "sshd_config"))
	if err != nil {
		t.Fatal(err)
	}
	sshdPath := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + ` (\S+)$`).FindSubmatch(sshdConf)
		if m == nil {
			t.Fatalf("sshd_config has no %s", key)
		}
		p, ok := resolve(string(m[1]), sshdMounts)
		if !ok {
			t.Fatalf("sshd_config %s %s is not a volume of demo-sshd", key, m[1])
		}
		return p
	}
	hostKeyPEM, err := os.ReadFile(sshdPath("HostKey"))
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.ParsePrivateKey(hostKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := os.ReadFile(sshdPath("AuthorizedKeysFile"))
	if err != nil {
		t.Fatal(err)
	}
	var sawSSH, sawPG bool
	for _, tg := range cfg.Targets {
		switch tg.Protocol {
		case "ssh":
			sawSSH = true
			b, err := os.ReadFile(tg.SSH.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := ssh.ParsePrivateKey(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(authorized, bytes.Fields(ssh.MarshalAuthorizedKey(signer.PublicKey()))[1]) {
				t.Errorf("target %s: demo-sshd does not authorize the gateway's key", tg.Name)
			}
			cb, err := knownhosts.New(tg.SSH.KnownHosts)
			if err != nil {
				t.Fatal(err)
			}
			addr := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 22}
			if err := cb(tg.Address, addr, hostKey.PublicKey()); err != nil {
				t.Errorf("target %s: the gateway would refuse demo-sshd's host key: %v", tg.Name, err)
			}
		case "postgres":
			sawPG = true
			checkPostgresInit(t, c, tg)
		}
	}
	if !sawSSH || !sawPG {
		t.Errorf("the compose gateway should offer the demo Postgres and the demo sshd (ssh %v, postgres %v)", sawSSH, sawPG)
	}
}

func parseSSHKeyFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = ssh.ParsePrivateKey(b)
	return err
}

func checkPostgresInit(t *testing.T, c *composeFile, tg gateway.Target) {
	t.Helper()
	pg := c.Services["postgres"]
	init := ""
	for _, v := range pg.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/docker-entrypoint-initdb.d/") {
			init = filepath.Join(repoRoot, src)
		}
	}
	script, err := os.ReadFile(init)
	if err != nil {
		t.Fatalf("postgres init script: %v", err)
	}
	for _, want := range []string{"CREATE ROLE " + tg.Postgres.User + " LOGIN", "CREATE DATABASE " + tg.Postgres.Database,
		"password_encryption = 'scram-sha-256'"} {
		if !bytes.Contains(script, []byte(want)) {
			t.Errorf("postgres init script lacks %q", want)
		}
	}
	// The gateway reads the password from the same secret the init script reads.
	var ref string
	for name, def := range c.Secrets {
		if filepath.Join(repoRoot, def.File) == tg.Postgres.PasswordFile {
			ref = name
		}
	}
	if ref == "" || !slices.Contains(pg.Secrets, ref) || !bytes.Contains(script, []byte("/run/secrets/"+ref)) {
		t.Errorf("the gateway's password_file %s is not the secret the postgres init script reads", tg.Postgres.PasswordFile)
	}
	if tg.Postgres.TLS != "disable" {
		t.Errorf("target %s: the demo Postgres has no TLS, tls must be disable", tg.Name)
	}
}

func checkStoreConfig(t *testing.T, name string, sc clickhouse.ServerConfig, cfg clickhouse.Config, env map[string]string) {
	t.Helper()
	if _, err := clickhouse.NewStore(nil, cfg); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	if len(sc.Addr) == 0 {
		t.Errorf("%s: clickhouse.addr is empty", name)
	}
	if sc.PasswordEnv != "" && env[sc.PasswordEnv] == "" {
		t.Errorf("%s: clickhouse.password_env %s is not in the environment", name, sc.PasswordEnv)
	}
	if sc.Username == readerUser {
		checkReaderLogin(t, name, sc)
		return
	}
	if u := env["CLICKHOUSE_USER"]; u != "" && u != sc.Username {
		t.Errorf("%s: logs in as %q, the server creates %q", name, sc.Username, u)
	}
}

// readerUser is the query role's read-only login, shipped as a users.d file.
const readerUser = "tapline_reader"

// checkReaderLogin: the shipped users.d file defines the login with a read-only
// profile that still allows per-query limits, and the password the role passes.
func checkReaderLogin(t *testing.T, name string, sc clickhouse.ServerConfig) {
	t.Helper()
	raw, err := os.ReadFile("clickhouse/users.d/tapline-reader.xml")
	if err != nil {
		t.Fatal(err)
	}
	var x struct {
		Profiles struct {
			Reader struct {
				Readonly int `xml:"readonly"`
			} `xml:"tapline_reader"`
		} `xml:"profiles"`
		Users struct {
			Reader struct {
				Password struct {
					FromEnv string `xml:"from_env,attr"`
				} `xml:"password"`
				Profile string `xml:"profile"`
			} `xml:"tapline_reader"`
		} `xml:"users"`
	}
	if err := xml.Unmarshal(raw, &x); err != nil {
		t.Fatalf("tapline-reader.xml: %v", err)
	}
	if x.Profiles.Reader.Readonly != 2 || x.Users.Reader.Profile != readerUser {
		t.Errorf("%s: %s is not bound to a readonly=2 profile: %+v", name, readerUser, x)
	}
	if x.Users.Reader.Password.FromEnv != sc.PasswordEnv {
		t.Errorf("%s: passes %s, the server reads %s's password from %s", name, sc.PasswordEnv, readerUser, x.Users.Reader.Password.FromEnv)
	}
}

// checkPublishedPorts: each published container port is one the role listens on.
func checkPublishedPorts(t *testing.T, name string, ports, listens []string) {
	t.Helper()
	var have []string
	for _, l := range listens {
		if _, p, err := net.SplitHostPort(l); err == nil {
			have = append(have, p)
		}
	}
	for _, p := range ports {
		parts := strings.Split(p, ":")
		if cp := parts[len(parts)-1]; !slices.Contains(have, cp) {
			t.Errorf("%s publishes %s, but listens on %v", name, p, listens)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func decodeKnown(t *testing.T, name string, b []byte, into any) {
	t.Helper()
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// ---- Kubernetes: role configurations and environment ----

type k8sObjects struct {
	configMaps  map[string]*corev1.ConfigMap
	deployments map[string]*appsv1.Deployment
}

func loadKubernetes(t *testing.T) k8sObjects {
	t.Helper()
	o := k8sObjects{configMaps: map[string]*corev1.ConfigMap{}, deployments: map[string]*appsv1.Deployment{}}
	for name, doc := range documents(t, "kubernetes/*.yaml") {
		switch v := decodeStrict(t, name, doc).(type) {
		case *corev1.ConfigMap:
			o.configMaps[v.Name] = v
		case *appsv1.Deployment:
			o.deployments[v.Name] = v
		}
	}
	return o
}

// podMounts maps a container's volume mounts to local directories: ConfigMaps
// defined in the manifests are written out, Secrets and ConfigMaps that are not
// shipped become stand-in directories, emptyDirs empty ones.
func podMounts(t *testing.T, o k8sObjects, d *appsv1.Deployment, c corev1.Container) []mount {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Errorf("%s: volume mount %s has no volume", d.Name, vm.Name)
			continue
		}
		dir := t.TempDir()
		standIn := v.Secret != nil || v.ConfigMap != nil && o.configMaps[v.ConfigMap.Name] == nil
		if v.ConfigMap != nil {
			if cm, ok := o.configMaps[v.ConfigMap.Name]; ok {
				for k, val := range cm.Data {
					if err := os.WriteFile(filepath.Join(dir, k), []byte(val), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if vm.SubPath != "" {
			local := filepath.Join(dir, vm.SubPath)
			if _, err := os.Stat(local); err != nil {
				t.Errorf("%s: mounts %s from %s, which has no key %s", d.Name, vm.MountPath, vm.Name, vm.SubPath)
			}
			out = append(out, mount{target: vm.MountPath, local: local})
			continue
		}
		out = append(out, mount{target: vm.MountPath, local: dir, standIn: standIn})
	}
	return out
}

// containerEnv gives every variable a value; values from Secrets and ConfigMaps
// are stand-ins.
func containerEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = cmpOr(e.Value, "from-valueFrom")
	}
	return env
}

// envRead lists the TAPLINE_* variables a role reads.
func envRead(t *testing.T, role string) []string {
	t.Helper()
	keys := map[string]func() []string{"gateway": gateway.EnvKeys, "process": runner.EnvKeys, "sink": sink.EnvKeys, "query": server.EnvKeys}[role]
	if keys == nil {
		t.Fatalf("no role %q", role)
	}
	return keys()
}

func TestKubernetesRoleConfigsLoad(t *testing.T) {
	o := loadKubernetes(t)
	for _, name := range []string{"tapline-gateway", "tapline-process", "tapline-sink", "tapline-query"} {
		d, ok := o.deployments[name]
		if !ok {
			t.Errorf("Deployment %s missing", name)
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			checkRoleArgs(t, name, c.Args)
			role := c.Args[0]
			mounts := podMounts(t, o, d, c)
			env := containerEnv(c)
			cfgPath, ok := resolve(flagValue(c.Args, "--config"), mounts)
			if !ok {
				t.Errorf("%s: --config %q is not mounted", name, flagValue(c.Args, "--config"))
				continue
			}
			raw, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			text := []byte(localize(t, string(raw), mounts))
			var passwordEnvs []string
			switch role {
			case "gateway":
				cfg, err := gateway.Parse(text, lookupIn(env))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				// A missing key would be generated per pod: signatures no verifier trusts.
				if _, err := os.Stat(cfg.SigningKey); err != nil {
					t.Errorf("%s: the signing key is not mounted from a Secret: %v", name, err)
				}
				for _, tg := range cfg.Targets {
					switch {
					case tg.Postgres != nil && tg.Postgres.PasswordEnv != "":
						passwordEnvs = append(passwordEnvs, tg.Postgres.PasswordEnv)
					case tg.SSH != nil && tg.SSH.PasswordEnv != "":
						passwordEnvs = append(passwordEnvs, tg.SSH.PasswordEnv)
						if env[tg.SSH.PasswordEnv] == "" {
							t.Errorf("%s: target %s: %s is not set", name, tg.Name, tg.SSH.PasswordEnv)
						}
					}
				}
			case "process":
				if _, err := runner.Parse(text, lookupIn(env)); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			case "sink":
				cfg := &clickhouse.SinkFile{}
				decodeKnown(t, name, text, cfg)
				checkStoreConfig(t, name, cfg.ClickHouse.ServerConfig, cfg.ClickHouse.Config, env)
				passwordEnvs = append(passwordEnvs, cfg.ClickHouse.PasswordEnv)
				if len(cfg.Kafka.Brokers) == 0 {
					t.Errorf("%s: no Kafka brokers", name)
				}
			case "query":
				cfg := &api.FileConfig{}
				decodeKnown(t, name, text, cfg)
				checkStoreConfig(t, name, cfg.ClickHouse.ServerConfig, cfg.ClickHouse.Config, env)
				passwordEnvs = append(passwordEnvs, cfg.ClickHouse.PasswordEnv)
				if cmpOr(flagValue(c.Args, "--oidc-issuer"), cfg.OIDC.Issuer) == "" || cmpOr(flagValue(c.Args, "--oidc-audience"), cfg.OIDC.Audience) == "" {
					t.Errorf("%s: the query API needs oidc.issuer and oidc.audience", name)
				}
				for _, k := range cfg.TrustedGatewayKeys {
					// Localized, a mounted key file exists here (as a stand-in).
					if _, err := os.Stat(k); err != nil && !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(k) {
						t.Errorf("%s: trusted gateway key %s is not mounted", name, k)
					}
				}
			}
			read := envRead(t, role)
			for v := range env {
				switch {
				case strings.HasPrefix(v, "TAPLINE_") && !slices.Contains(read, v):
					t.Errorf("%s sets %s, which tapline %s does not read (it reads %v)", name, v, role, read)
				case !strings.HasPrefix(v, "TAPLINE_") && !slices.Contains(passwordEnvs, v):
					t.Errorf("%s sets %s, which its configuration does not reference", name, v)
				}
			}
		}
	}
}

// TestDeployDocNamesReferencedObjects: every Secret and ConfigMap the Deployments
// use but the manifests do not define is listed for operators in docs/deploy.md.
func TestDeployDocNamesReferencedObjects(t *testing.T) {
	o := loadKubernetes(t)
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range o.deployments {
		var refs []string
		for _, v := range d.Spec.Template.Spec.Volumes {
			switch {
			case v.Secret != nil:
				refs = append(refs, v.Secret.SecretName)
			case v.ConfigMap != nil && o.configMaps[v.ConfigMap.Name] == nil:
				refs = append(refs, v.ConfigMap.Name)
			}
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
		for _, r := range refs {
			if !bytes.Contains(doc, []byte("`"+r+"`")) {
				t.Errorf("%s uses %s, which docs/deploy.md does not tell operators to create", d.Name, r)
			}
		}
	}
}

// ---- Kafka: topics.sh and topics.yaml define the same topics ----

func TestKafkaTopicsScriptMatchesManifests(t *testing.T) {
	src, err := os.ReadFile("kafka/topics.sh")
	if err != nil {
		t.Fatal(err)
	}
	type topic struct {
		partitions int
		config     map[string]string
	}
	script := map[string]topic{}
	for _, m := range regexp.MustCompile(`(?m)^create (\S+) (\d+)(.*)$`).FindAllStringSubmatch(string(src), -1) {
		tp := topic{config: map[string]string{}}
		tp.partitions, _ = strconv.Atoi(m[2])
		for _, c := range regexp.MustCompile(`--config (\S+)=(\S+)`).FindAllStringSubmatch(m[3], -1) {
			tp.config[c[1]] = c[2]
		}
		script[m[1]] = tp
	}
	manifests := map[string]*kafkaTopic{}
	for name, doc := range documents(t, "kafka/*.yaml") {
		if tp, ok := decodeStrict(t, name, doc).(*kafkaTopic); ok {
			manifests[tp.Metadata.Name] = tp
		}
	}
	if len(script) == 0 || len(script) != len(manifests) {
		t.Fatalf("topics.sh creates %d topics, topics.yaml defines %d", len(script), len(manifests))
	}
	for name, m := range manifests {
		s, ok := script[name]
		if !ok {
			t.Errorf("topics.sh does not create %s", name)
			continue
		}
		if s.partitions != m.Spec.Partitions {
			t.Errorf("%s: %d partitions in topics.sh, %d in topics.yaml", name, s.partitions, m.Spec.Partitions)
		}
		for k, v := range m.Spec.Config {
			// min.insync.replicas follows the replication factor in the script;
			// compression.type=producer is the broker default.
			if k == "min.insync.replicas" || k == "compression.type" && v == "producer" {
				continue
			}
			if s.config[k] != v {
				t.Errorf("%s: %s is %q in topics.yaml, %q in topics.sh", name, k, v, s.config[k])
			}
		}
		for k := range s.config {
			if _, ok := m.Spec.Config[k]; !ok {
				t.Errorf("%s: topics.sh sets %s, topics.yaml does not", name, k)
			}
		}
	}
	// The processors keep each session's state in the partition of the same number
	// as its raw partition, so the state topic needs at least as many.
	if st, raw := manifests["tapline.processor.state"], manifests["tapline.frames.raw"]; st == nil || raw == nil || st.Spec.Partitions < raw.Spec.Partitions {
		t.Error("tapline.processor.state needs at least the raw topic's partition count")
	}
}
