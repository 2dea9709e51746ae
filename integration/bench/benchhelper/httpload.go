package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// httpLoad sends n requests over conc connections (conc streams of one
// connection with h2) and prints "seconds requests bytes p50_µs p99_µs": a PUT of body bytes
// when body > 0, else a GET. token (may be "-") goes in Authorization: Bearer;
// caFile (may be "-") is the CA the server's certificate is checked against.
// A non-2xx answer stops the run: a benchmark of errors measures nothing.
func httpLoad(args []string) error {
	if len(args) != 7 {
		return errors.New("usage: benchhelper http URL N CONC BODY_BYTES h1|h2 TOKEN|- CA_FILE|-")
	}
	url, proto, token, caFile := args[0], args[4], args[5], args[6]
	n, err1 := strconv.Atoi(args[1])
	conc, err2 := strconv.Atoi(args[2])
	bodyLen, err3 := strconv.Atoi(args[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	client, err := loadClient(proto, caFile, conc)
	if err != nil {
		return err
	}
	body := bytes.Repeat([]byte(`{"sku":"A1","qty":1}`+"\n"), bodyLen/21+1)[:bodyLen]
	var next, moved atomic.Int64
	lat := make([]time.Duration, n) // each slot written by the one goroutine that took its number
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				t0 := time.Now()
				m, err := oneRequest(client, url, token, body)
				lat[i-1] = time.Since(t0)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				moved.Add(m)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	took := time.Since(start)
	slices.Sort(lat)
	pct := func(p int) int64 { return lat[min(n-1, n*p/100)].Microseconds() }
	fmt.Printf("%.6f %d %d %d %d\n", took.Seconds(), n, moved.Load(), pct(50), pct(99))
	return nil
}

func loadClient(proto, caFile string, conc int) (*http.Client, error) {
	tc := &tls.Config{}
	if caFile != "-" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	switch proto {
	case "h2":
		tr.ForceAttemptHTTP2 = true
		tr.MaxConnsPerHost = 1 // one connection, conc streams, as an h2 client does
	case "h1":
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	default:
		return nil, fmt.Errorf("protocol %q: want h1 or h2", proto)
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// oneRequest returns the bytes moved (request body plus response body).
func oneRequest(c *http.Client, url, token string, body []byte) (int64, error) {
	method, rd := http.MethodGet, io.Reader(nil)
	if len(body) > 0 {
		method, rd = http.MethodPut, bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	if token != "-" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, err
	}
	return got + int64(len(body)), nil
}
