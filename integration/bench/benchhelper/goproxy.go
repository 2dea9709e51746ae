package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"
)

// impersonation: the credentials a proxy calls with and whom it impersonates.
type impersonation struct{ tokenFile, user, group string }

// goProxy serves a plain reverse proxy on listen (TLS, h2 or HTTP/1.1 from
// clients, upgrades passed through) to upstream over TLS trusted by caFile:
// Go's HTTP stack on both hops with nothing recorded. Next to nginx as a
// proxy, it tells what the gateway's cost per call owes to Go's HTTP/2 and
// TLS and what to recording.
//
// With imp it replaces the client's credentials with its own token and adds
// the impersonation headers, as the Kubernetes gateway does by default: the
// floor of an impersonating proxy, the API server's impersonation checks
// included.
func goProxy(listen, upstream, certFile, keyFile, caFile string, imp *impersonation) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("upstream %q: %w", upstream, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", caFile)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: "localhost"},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	if imp != nil {
		tok, err := os.ReadFile(imp.tokenFile)
		if err != nil {
			return err
		}
		auth := "Bearer " + strings.TrimSpace(string(tok))
		direct := rp.Director
		rp.Director = func(r *http.Request) {
			direct(r)
			r.Header.Set("Authorization", auth)
			r.Header.Set("Impersonate-User", imp.user)
			r.Header.Set("Impersonate-Group", imp.group)
		}
	}
	srv := &http.Server{Addr: listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(certFile, keyFile)
}
