package recorder

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

type metrics struct {
	frames   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  prometheus.Histogram
	active   prometheus.Gauge
	refused  prometheus.Counter
	failed   prometheus.Counter
	denied   prometheus.Counter
	recovery *prometheus.CounterVec
	// batchRecords: frames per record batch the producer wrote (group commit at work).
	batchRecords prometheus.Histogram
}

// batchHook feeds batchRecords from the Kafka client.
type batchHook struct{ h prometheus.Histogram }

func (b batchHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	b.h.Observe(float64(m.NumRecords))
}

func newMetrics(reg prometheus.Registerer, b *budget) *metrics {
	labels := []string{"direction", "protocol"}
	m := &metrics{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_recorder_frames_total",
			Help: "Frames acknowledged by Kafka, lifecycle frames included.",
		}, labels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_recorder_payload_bytes_total",
			Help: "Payload bytes of frames acknowledged by Kafka.",
		}, labels),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tapline_recorder_produce_latency_seconds",
			Help:    "Time from handing a frame to the producer until Kafka acknowledged or failed it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tapline_recorder_active_sessions",
			Help: "Sessions started and neither ended nor failed.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tapline_recorder_sessions_refused_total",
			Help: "Sessions refused because their session.start was not acknowledged.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tapline_recorder_sessions_failed_total",
			Help: "Started sessions whose recording failed; the proxy terminates them.",
		}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tapline_recorder_sessions_denied_total",
			Help: "Denied sessions recorded.",
		}),
		recovery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapline_recorder_failed_session_ends_total",
			Help: "Failed sessions closed after Kafka was back, by outcome: written (session.end with the failure reason), empty (nothing of the session reached Kafka), abandoned (gateway shut down first).",
		}, []string{"outcome"}),
	}
	m.batchRecords = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tapline_recorder_batch_frames",
		Help:    "Frames per record batch written to Kafka (one per partition in a produce request); the recorder's own client only.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	if reg == nil {
		return m
	}
	reg.MustRegister(m.frames, m.bytes, m.latency, m.active, m.refused, m.failed, m.denied, m.recovery, m.batchRecords,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tapline_recorder_unacknowledged_bytes",
			Help: "Frame bytes handed to Kafka and not yet acknowledged (bounded by max_buffered_bytes).",
		}, func() float64 { return float64(b.inUse()) }))
	return m
}

// directionCounters resolves the per-direction series of one protocol once per session.
type directionCounters struct {
	frames, bytes [2]prometheus.Counter // index: 0 client, 1 server
}

func (m *metrics) forProtocol(p schemas.Protocol) directionCounters {
	proto := strings.ToLower(string(p))
	var d directionCounters
	for i, dir := range []string{"client", "server"} {
		d.frames[i] = m.frames.WithLabelValues(dir, proto)
		d.bytes[i] = m.bytes.WithLabelValues(dir, proto)
	}
	return d
}

func dirIndex(d schemas.Direction) int {
	if d == schemas.Client {
		return 0
	}
	return 1
}
