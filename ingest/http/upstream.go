package httpproxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// upstream is how the gateway reaches one target: its transport (verify-full
// TLS unless configured otherwise, h2 through ALPN) and the credentials it adds.
type upstream struct {
	name      string
	scheme    string
	address   string
	host      string
	basePath  string
	transport *http.Transport
	h1        *http.Transport // HTTP/1.1 only, for WebSocket upgrades
	auth      func(h http.Header) error
	insecure  bool
}

func newUpstream(t *Target, cfg *Config, lookupEnv func(string) (string, bool)) (*upstream, error) {
	tc := t.HTTP
	u := &upstream{name: t.Name, scheme: tc.Scheme, address: t.Address, host: tc.Host, basePath: tc.BasePath,
		insecure: tc.InsecureSkipVerify}
	if u.scheme == "" {
		u.scheme = "https"
	}
	if u.host == "" {
		u.host = t.Address
		if h, port, err := net.SplitHostPort(t.Address); err == nil && ((u.scheme == "https" && port == "443") || (u.scheme == "http" && port == "80")) {
			u.host = h
		}
	}
	tlsCfg, err := targetTLS(t)
	if err != nil {
		return nil, err
	}
	h2 := tc.HTTP2 == nil || *tc.HTTP2
	u.transport = newTransport(cfg, tlsCfg, h2)
	u.h1 = newTransport(cfg, tlsCfg, false)
	u.auth, err = credentials(&tc, lookupEnv)
	return u, err
}

func newTransport(cfg *Config, tlsCfg *tls.Config, h2 bool) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsCfg.Clone(),
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.UpstreamTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Bodies are relayed as they are: the agent decides about compression.
		DisableCompression: true,
		ForceAttemptHTTP2:  h2,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr
}

// targetTLS is verify-full against the system roots, or the target's ca_file.
func targetTLS(t *Target) (*tls.Config, error) {
	tc := t.HTTP
	host, _, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("http target %q: address %q is not host:port", t.Name, t.Address)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: tc.InsecureSkipVerify}
	if tc.ServerName != "" {
		cfg.ServerName = tc.ServerName
	}
	if tc.CAFile != "" {
		b, err := os.ReadFile(tc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http target %q: ca_file: %w", t.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("http target %q: ca_file %s holds no PEM certificate", t.Name, tc.CAFile)
		}
		cfg.RootCAs = pool
	}
	if cc := tc.ClientCert; cc != nil {
		w := &watchedFile{paths: []string{cc.CertFile, cc.KeyFile}}
		if _, err := w.clientCertificate(); err != nil {
			return nil, fmt.Errorf("http target %q: %w", t.Name, err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := w.clientCertificate()
			if err != nil {
				slog.Error("target client certificate unreadable", "target", t.Name, "err", err)
			}
			return c, err
		}
	}
	return cfg, nil
}

// credentials returns what sets the target's own credentials on a request.
func credentials(tc *TargetConfig, lookupEnv func(string) (string, bool)) (func(http.Header) error, error) {
	switch {
	case tc.Bearer != nil:
		s := newSecretSource(tc.Bearer, lookupEnv)
		return func(h http.Header) error {
			v, err := s.get()
			if err != nil {
				return fmt.Errorf("bearer token: %w", err)
			}
			h.Set("Authorization", "Bearer "+v)
			return nil
		}, nil
	case tc.Basic != nil:
		s, user := newSecretSource(&tc.Basic.Password, lookupEnv), tc.Basic.User
		return func(h http.Header) error {
			v, err := s.get()
			if err != nil {
				return fmt.Errorf("basic auth password: %w", err)
			}
			r := http.Request{Header: h}
			r.SetBasicAuth(user, v)
			return nil
		}, nil
	case tc.Header != nil:
		s, name := newSecretSource(&tc.Header.Value, lookupEnv), http.CanonicalHeaderKey(tc.Header.Name)
		return func(h http.Header) error {
			v, err := s.get()
			if err != nil {
				return fmt.Errorf("header %s: %w", name, err)
			}
			h.Set(name, v)
			return nil
		}, nil
	}
	return func(http.Header) error { return nil }, nil
}
