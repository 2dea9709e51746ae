package postgres

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections *prometheus.CounterVec // by result
	denials     *prometheus.CounterVec // by reason
	cancels     *prometheus.CounterVec // by result
	active      prometheus.Gauge
	messages    *prometheus.CounterVec // by direction
	bytes       *prometheus.CounterVec // by direction

	clientMsgs, serverMsgs   prometheus.Counter
	clientBytes, serverBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_postgres_connections_total",
			Help: "Postgres connections by result: session, denied, refused (recording unavailable), target_error, protocol_error, tls_required, limited (over the pending-handshake limits), abandoned (closed before authenticating), cancel.",
		}, []string{"result"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_postgres_denials_total",
			Help: "Postgres logins denied, by reason.",
		}, []string{"reason"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_postgres_cancel_requests_total",
			Help: "Postgres CancelRequests by result: forwarded, unknown_key, not_recorded, error.",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tapline_postgres_sessions_active",
			Help: "Postgres sessions being relayed.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_postgres_messages_total",
			Help: "Postgres protocol messages relayed, by direction (client, server).",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_postgres_bytes_total",
			Help: "Postgres protocol bytes relayed, by direction (client, server).",
		}, []string{"direction"}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.denials, m.cancels, m.active, m.messages, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.clientMsgs, m.serverMsgs = m.messages.WithLabelValues("client"), m.messages.WithLabelValues("server")
	m.clientBytes, m.serverBytes = m.bytes.WithLabelValues("client"), m.bytes.WithLabelValues("server")
	return m, nil
}
