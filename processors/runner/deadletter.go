package runner

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// Metric names of failure containment (deploy/prometheus/alerts.yaml uses them).
const (
	MetricFrameFailures = "tapline_process_frame_failures_total"
	MetricDeadLetters   = "tapline_process_dead_letters_total"
)

// Headers of a dead-letter record: where the raw record came from and why it failed.
const (
	HeaderError        = "tapline.error"
	HeaderRawTopic     = "tapline.raw.topic"
	HeaderRawPartition = "tapline.raw.partition"
	HeaderRawOffset    = "tapline.raw.offset"
	HeaderSessionID    = "tapline.session_id"
	HeaderSeq          = "tapline.seq"
)

// DeadLetterRecord is the raw record rec, unchanged (key, value, headers, timestamp),
// with headers naming its origin and the error, for the dead-letter topic.
func DeadLetterRecord(topic string, rec *kgo.Record, f *schemas.Frame, err error) *kgo.Record {
	h := append([]kgo.RecordHeader(nil), rec.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderError, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: HeaderRawTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderRawPartition, Value: []byte(strconv.FormatInt(int64(rec.Partition), 10))},
		kgo.RecordHeader{Key: HeaderRawOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		kgo.RecordHeader{Key: HeaderSessionID, Value: []byte(f.SessionID)},
		kgo.RecordHeader{Key: HeaderSeq, Value: []byte(strconv.FormatInt(f.Seq, 10))},
	)
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: h, Timestamp: rec.Timestamp}
}

// DeadLetterHeader returns the value of header key in rec ("" when absent).
func DeadLetterHeader(rec *kgo.Record, key string) string {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		if rec.Headers[i].Key == key {
			return string(rec.Headers[i].Value)
		}
	}
	return ""
}
