package httpproxy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec // by result
	bytes    *prometheus.CounterVec // by direction
	sessions prometheus.Gauge

	// the hot path's counters, resolved once
	forwarded, clientBytes, serverBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_http_requests_total",
			Help: "HTTP requests by result: forwarded, websocket, upgrade (SPDY and other non-WebSocket upgrades relayed), unauthenticated, denied, unknown_target, refused (recording unavailable), limited, upstream_error, client_error.",
		}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_http_body_bytes_total",
			Help: "HTTP body and WebSocket message bytes relayed, by direction (client, server).",
		}, []string{"direction"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tapline_http_sessions_active",
			Help: "HTTP sessions (agent connection and target) being relayed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.sessions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.forwarded = m.requests.WithLabelValues("forwarded")
	m.clientBytes, m.serverBytes = m.bytes.WithLabelValues("client"), m.bytes.WithLabelValues("server")
	return m, nil
}
