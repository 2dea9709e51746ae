// Package metricsserver is the operations endpoint every role serves on its
// metrics.listen address: GET /metrics (Prometheus), GET /healthz (the process
// runs) and GET /readyz (the role can do its work, when it says how to tell).
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Ready reports whether a role can do its work; nil means ready.
type Ready func(context.Context) error

// Server is a bound, not yet serving, operations endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (host:port; port 0 picks one) for reg's metrics. ready may be
// nil: /readyz then answers like /healthz.
func Listen(addr string, reg prometheus.Gatherer, ready Ready, opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: Handler(reg, ready, opts...), ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Option adds handlers to the endpoint.
type Option func(*http.ServeMux)

// Pprof adds Go's /debug/pprof/ handlers, to profile a role in place.
func Pprof() Option {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// Handler serves /metrics, /healthz and /readyz.
func Handler(reg prometheus.Gatherer, ready Ready, opts ...Option) http.Handler {
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Start serves in the background until Close.
func (s *Server) Start(log *slog.Logger) {
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint failed", "err", err)
		}
	}()
	log.Info("metrics endpoint listening", "addr", s.ln.Addr().String())
}

// Close stops serving (or releases the address if Start was never called).
func (s *Server) Close() error {
	s.ln.Close()
	return s.srv.Close()
}

// Serve is Listen then Start, for roles that need neither the address early nor
// a separate start: the returned function closes it.
func Serve(addr string, reg prometheus.Gatherer, ready Ready, log *slog.Logger) (func(), error) {
	s, err := Listen(addr, reg, ready)
	if err != nil {
		return nil, err
	}
	s.Start(log)
	return func() { _ = s.Close() }, nil
}
