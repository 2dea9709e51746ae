package sshproxy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections *prometheus.CounterVec // by result
	active      prometheus.Gauge
	channels    *prometheus.CounterVec // by type and result
	bytes       *prometheus.CounterVec // by direction

	clientBytes, serverBytes prometheus.Counter
}

// Connection results.
const (
	resultSession     = "session"
	resultDenied      = "denied"
	resultRefused     = "refused" // recording unavailable
	resultTargetError = "target_error"
	resultAbandoned   = "abandoned" // closed before authenticating
	resultLimited     = "limited"   // over the pending-handshake limits
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_ssh_connections_total",
			Help: "SSH connections by result: session, denied, refused (recording unavailable), target_error, abandoned (closed before authenticating).",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tapline_ssh_sessions_active",
			Help: "SSH connections being relayed.",
		}),
		channels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_ssh_channels_total",
			Help: "SSH channel opens by type and result (relayed, refused, failed).",
		}, []string{"type", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_ssh_bytes_total",
			Help: "SSH channel data bytes relayed, by direction (client, server).",
		}, []string{"direction"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{m.connections, m.active, m.channels, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.clientBytes, m.serverBytes = m.bytes.WithLabelValues("client"), m.bytes.WithLabelValues("server")
	return m, nil
}

// channelType keeps the label set small: channel types are chosen by the peer.
func channelType(t string) string {
	switch t {
	case "session", "direct-tcpip", "forwarded-tcpip", "direct-streamlocal@openssh.com",
		"forwarded-streamlocal@openssh.com", "auth-agent@openssh.com", "x11":
		return t
	}
	return "other"
}
