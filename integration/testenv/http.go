package testenv

import "testing"

// Nginx is the test nginx (integration/scripts/http.sh): a TLS target with its
// own CA serving static files, and the binary for benchmarks.
type Nginx struct {
	Addr string // 127.0.0.1:PORT, TLS, HTTP/1.1 and h2
	CA   string // PEM file of its CA
	Root string // the files it serves: hello.txt, words.txt, large.bin (64 MiB)
	Bin  string
}

// NginxTarget returns the running nginx, or ends the test as need does.
func NginxTarget(t testing.TB) Nginx {
	t.Helper()
	v := need(t, "nginx", "TAPLINE_NGINX_ADDR", "TAPLINE_NGINX_CA", "TAPLINE_NGINX_ROOT", "TAPLINE_NGINX_BIN")
	n := Nginx{Addr: v[0], CA: v[1], Root: v[2], Bin: v[3]}
	reachable(t, "nginx", n.Addr, "TAPLINE_NGINX_LOG")
	return n
}

// HTTPPython returns the Python of the venv with requests and websockets.
func HTTPPython(t testing.TB) string {
	t.Helper()
	return need(t, "http clients", "TAPLINE_HTTP_PYTHON")[0]
}
