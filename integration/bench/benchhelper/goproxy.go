package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

// goProxy serves a plain reverse proxy on listen (TLS, h2 or HTTP/1.1 from
// clients, upgrades passed through) to upstream over TLS trusted by caFile:
// Go's HTTP stack on both hops with nothing recorded. Next to nginx as a
// proxy, it tells what the gateway's cost per call owes to Go's HTTP/2 and
// TLS and what to recording.
func goProxy(listen, upstream, certFile, keyFile, caFile string) error {
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
	srv := &http.Server{Addr: listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(certFile, keyFile)
}
