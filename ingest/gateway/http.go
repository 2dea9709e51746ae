package gateway

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/tapline/tapline/auth"
	httpproxy "github.com/tapline/tapline/ingest/http"
)

// addHTTP adds the HTTP edge when the http section is present.
func (g *Gateway) addHTTP() error {
	l := g.cfg.HTTP
	if l == nil {
		return nil
	}
	var tlsCfg *tls.Config
	if !l.AllowPlaintext {
		var err error
		if tlsCfg, err = listenerTLS(l.TLSCert, l.TLSKey, g.cfg.DataDir, l.Listen, g.log); err != nil {
			return err
		}
	}
	policy := map[string][]string{}
	var targets []httpproxy.Target
	for _, t := range g.cfg.Targets {
		// Every target is in the policy so that naming a Postgres target over
		// HTTP says so instead of "unknown target".
		policy[t.Name] = t.Groups
		if t.Protocol == "http" || t.Protocol == "kubernetes" {
			targets = append(targets, httpproxy.Target{Name: t.Name, Address: t.Address, Groups: t.Groups, HTTP: *t.HTTP})
		}
	}
	kube := g.cfg.kubeTargets()
	srv, err := httpproxy.New(httpproxy.Options{
		Config:     *l,
		TLS:        tlsCfg,
		Targets:    targets,
		Verifier:   g.verifier,
		Policy:     auth.NewPolicy(policy),
		Recorder:   httpproxy.RecordingBy(g.rec, kubeProtocol(kube)),
		Outbound:   kubeOutbound(kube),
		Dialect:    kubeDialect(kube),
		Logger:     g.log,
		Registerer: g.reg,
		Limits:     g.limits,
		LookupEnv:  g.cfg.lookupEnv,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	g.servers = append(g.servers, server{name: "http", ln: ln, serve: srv.Serve})
	return nil
}

func (c *Config) validateHTTPListener(p *problems) {
	l := c.HTTP
	if l == nil {
		return
	}
	if l.Listen == "" {
		p.add("http.listen", "required when the http section is present")
	} else if checkHostPort(p, "http.listen", l.Listen) && l.AllowPlaintext && !loopbackHost(l.Listen) {
		p.add("http.allow_plaintext", "only allowed on a loopback listen address, and http.listen is %s: tokens must travel over TLS", l.Listen)
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		p.add("http.tls_cert", "tls_cert and tls_key must be set together")
	}
	if l.TLSCert == "" && l.Listen != "" && !loopbackHost(l.Listen) && !l.AllowSelfSigned && !l.AllowPlaintext {
		p.add("http.tls_cert", "required on the non-loopback listen address %s: agents need a certificate they can verify; "+
			"set tls_cert and tls_key, or allow_self_signed: true to generate one agents pin with `tapline ca`", l.Listen)
	}
	for key, f := range map[string]string{"http.tls_cert": l.TLSCert, "http.tls_key": l.TLSKey} {
		if f != "" {
			checkReadable(p, key, f)
		}
	}
	if err := l.Validate(); err != nil {
		*p = append(*p, err.Error())
	}
}

func (c *Config) validateHTTPTarget(p *problems, key string, t *Target, lookupEnv func(string) (string, bool)) {
	if c.HTTP == nil {
		p.add(key+".protocol", "http target but no http listener is configured (add an http: section with listen)")
	}
	if t.HTTP == nil {
		t.HTTP = &httpproxy.TargetConfig{} // https, verify-full, no credentials
	}
	*p = append(*p, httpproxy.ValidateTarget(key+".http", t.HTTP, lookupEnv)...)
	if t.HTTP.CAFile != "" {
		if _, err := loadCAPool(t.HTTP.CAFile); err != nil {
			p.add(key+".http.ca_file", "%v", err)
		}
	}
}
