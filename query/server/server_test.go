package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func serve(ctx context.Context, cfg *Config, h http.Handler) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	return Serve(ctx, cfg, ln, h, slog.Default())
}

// Bearer tokens must not cross the network in clear unless the operator says a
// TLS-terminating proxy is in front.
func TestQueryRefusesPlaintextOffLoopback(t *testing.T) {
	h := http.NotFoundHandler()
	err := serve(context.Background(), &Config{Listen: "0.0.0.0:0"}, h)
	if err == nil || !strings.Contains(err.Error(), "allow_plaintext") || !strings.Contains(err.Error(), "tls_cert") {
		t.Fatalf("plain HTTP on 0.0.0.0: %v, want a refusal naming tls_cert and allow_plaintext", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve, then shut down at once
	for _, cfg := range []*Config{{Listen: "127.0.0.1:0"}, {Listen: "0.0.0.0:0", AllowPlaintext: true}} {
		if err := serve(ctx, cfg, h); err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
}
