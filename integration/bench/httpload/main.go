// Command httpload drives HTTP requests for the benchmark's HTTP section:
//
//	httpload -url URL [-token T] [-ca FILE] [-h2] [-n N] [-c C] [-body BYTES]
//
// It sends N requests over C connections (GET, or POST of BYTES bytes), checks
// each answers 2xx, and prints "REQS SECONDS REQS_PER_S".
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "request URL")
	token := flag.String("token", "", "bearer token")
	ca := flag.String("ca", "", "CA file for the server's certificate")
	h2 := flag.Bool("h2", false, "HTTP/2 (default HTTP/1.1)")
	n := flag.Int("n", 1000, "requests")
	c := flag.Int("c", 8, "concurrent connections")
	body := flag.Int("body", 0, "POST a body of this many bytes (0: GET)")
	flag.Parse()
	if err := run(*url, *token, *ca, *h2, *n, *c, *body); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func client(ca string, h2 bool) (*http.Client, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 64, DisableCompression: true}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

func run(url, token, ca string, h2 bool, n, c, size int) error {
	cl, err := client(ca, h2)
	if err != nil {
		return err
	}
	payload := bytes.Repeat([]byte("x"), size)
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	errs := make(chan error, c)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := one(cl, url, token, payload); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%d %.3f %.1f\n", n, secs, float64(n)/secs)
	return nil
}

func one(cl *http.Client, url, token string, payload []byte) error {
	method, body := http.MethodGet, io.Reader(nil)
	if len(payload) > 0 {
		method, body = http.MethodPost, bytes.NewReader(payload)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if len(payload) > 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, msg)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	return nil
}
