package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A listen address in use fails New with the key named (and without the panic
// an early cleanup once had).
func TestNewFailsCleanlyOnBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`
data_dir: %s
kafka: {brokers: ["127.0.0.1:1"]}
oidc: {issuer: "http://127.0.0.1:1", audience: tapline}
metrics: {listen: "127.0.0.1:0"}
postgres: {listen: %q}
targets:
  - {name: app, protocol: postgres, address: "127.0.0.1:5432", groups: [dba], postgres: {database: app, user: gw, password: pw, tls: disable}}
`, dir, busy.Addr().String())
	cfg, err := Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "postgres.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("New: %v", err)
	}
}

// Profiles are served only when metrics.pprof is on.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		g := &Gateway{cfg: &Config{Metrics: Metrics{Pprof: on}}, reg: prometheus.NewRegistry()}
		rec := httptest.NewRecorder()
		g.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/goroutine?debug=1", nil))
		served := rec.Code == 200 && strings.Contains(rec.Body.String(), "goroutine")
		if served != on {
			t.Fatalf("pprof %v: GET /debug/pprof/goroutine answered %d", on, rec.Code)
		}
	}
}
