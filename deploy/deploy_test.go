package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	var writers []string
	for name, doc := range documents(t, "kafka/*.yaml") {
		switch o := decodeStrict(t, name, doc).(type) {
		case *kafkaTopic:
			topics[o.Metadata.Name] = o
		case *kafkaUser:
			for _, acl := range o.Spec.Authorization.ACLs {
				if acl.Resource.Name == "tapline.frames.raw" && contains(acl.Operations, "Write") {
					writers = append(writers, o.Metadata.Name)
				}
			}
		}
	}
	for _, name := range []string{"tapline.frames.raw", "tapline.frames", "tapline.commands", "tapline.sessions", "tapline.audit"} {
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
