package gateway

import (
	"net/http"

	"github.com/tapline/tapline/auth"
	httpproxy "github.com/tapline/tapline/ingest/http"
	kubeedge "github.com/tapline/tapline/ingest/kubernetes"
	"github.com/tapline/tapline/schemas"
)

// A kubernetes target is served by the HTTP listener (its http: section says
// how to reach and authenticate to the API server) and recorded as the
// Kubernetes protocol, with the agent impersonated unless kubernetes.disabled.
func (c *Config) validateKubernetesTarget(p *problems, key string, t *Target, lookupEnv func(string) (string, bool)) {
	c.validateHTTPTarget(p, key, t, lookupEnv)
	if t.Kubernetes == nil {
		t.Kubernetes = &kubeedge.Impersonation{}
	}
	if err := t.Kubernetes.Validate(); err != nil {
		p.add(key+".kubernetes.user", "%v", err)
	}
}

// kubeTargets returns, by name, the impersonation of each kubernetes target.
func (c *Config) kubeTargets() map[string]*kubeedge.Impersonation {
	out := map[string]*kubeedge.Impersonation{}
	for _, t := range c.Targets {
		if t.Protocol == "kubernetes" {
			m := t.Kubernetes
			if m == nil {
				m = &kubeedge.Impersonation{}
			}
			out[t.Name] = m
		}
	}
	return out
}

// kubeOutbound impersonates the agent on requests to kubernetes targets.
func kubeOutbound(kube map[string]*kubeedge.Impersonation) func(string, *http.Request, auth.Identity) error {
	return func(target string, out *http.Request, id auth.Identity) error {
		if m := kube[target]; m != nil {
			return m.Outbound(out, id)
		}
		return nil
	}
}

// kubeDialect answers and records kubernetes targets in the API's own terms.
func kubeDialect(kube map[string]*kubeedge.Impersonation) func(string) *httpproxy.Dialect {
	d := kubeedge.Dialect()
	return func(target string) *httpproxy.Dialect {
		if kube[target] != nil {
			return d
		}
		return nil
	}
}

func kubeProtocol(kube map[string]*kubeedge.Impersonation) func(string) schemas.Protocol {
	return func(target string) schemas.Protocol {
		if kube[target] != nil {
			return schemas.Kubernetes
		}
		return ""
	}
}
