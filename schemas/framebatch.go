package schemas

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderFrames marks a tapline.frames.raw record that carries several
// consecutive frames of one session; its value is the frame count in decimal.
// Such a record's value is the frames' encoded values in seq order, each
// preceded by its length as an unsigned varint. A record without the header
// holds one encoded frame, as every record did before (docs/architecture.md,
// "Records of tapline.frames.raw"). Every frame keeps its own seq, timestamp
// and chain link: the record only spares the broker and the producer the
// per-record work.
const HeaderFrames = "tapline.frames"

// maxBatchFrames bounds the count a header may announce, before the value is
// read: a record of Kafka's size holds far fewer frames.
const maxBatchFrames = 1 << 20

// AppendFrameValue appends one encoded frame to the value of a record that
// carries several.
func AppendFrameValue(dst, frame []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(frame)))
	return append(dst, frame...)
}

// FrameValues returns the encoded frames of a tapline.frames.raw record: its
// value when count (the HeaderFrames header) is empty, else the count values
// the record carries. The slices alias value.
func FrameValues(value []byte, count string) ([][]byte, error) {
	if count == "" {
		return [][]byte{value}, nil
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || n > maxBatchFrames || n > len(value) {
		return nil, fmt.Errorf("record header %s=%q: want a frame count from 1 to %d that the value can hold", HeaderFrames, count, min(maxBatchFrames, len(value)))
	}
	out := make([][]byte, 0, n)
	for rest := value; len(out) < n; {
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return nil, fmt.Errorf("record of %d frames: frame %d is cut short at byte %d of %d", n, len(out), len(value)-len(rest), len(value))
		}
		out = append(out, rest[k:k+int(l)])
		rest = rest[k+int(l):]
		if len(out) == n && len(rest) > 0 {
			return nil, fmt.Errorf("record of %d frames: %d bytes follow the last frame", n, len(rest))
		}
	}
	return out, nil
}

// RecordFrameValues is FrameValues of a Kafka record.
func RecordFrameValues(rec *kgo.Record) ([][]byte, error) {
	return FrameValues(rec.Value, RecordHeaderValue(rec, HeaderFrames))
}

// RecordHeaderValue returns the value of rec's last header named key, "" when
// there is none.
func RecordHeaderValue(rec *kgo.Record, key string) string {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		if rec.Headers[i].Key == key {
			return string(rec.Headers[i].Value)
		}
	}
	return ""
}

// FrameRecord returns the record of the i-th of vals (RecordFrameValues of
// rec) as if it had been written alone: rec itself for a record of one frame,
// else a copy with that frame's value and without HeaderFrames. Dead letters
// and alerts name one frame this way.
func FrameRecord(rec *kgo.Record, vals [][]byte, i int) *kgo.Record {
	if len(vals) == 1 && RecordHeaderValue(rec, HeaderFrames) == "" {
		return rec
	}
	c := *rec
	c.Value = vals[i]
	c.Headers = nil
	for _, h := range rec.Headers {
		if h.Key != HeaderFrames {
			c.Headers = append(c.Headers, h)
		}
	}
	return &c
}

// RecordFrames decodes every frame of a tapline.frames.raw record written
// without a schema registry.
func RecordFrames(rec *kgo.Record) ([]Frame, error) {
	vals, err := RecordFrameValues(rec)
	if err != nil {
		return nil, err
	}
	out := make([]Frame, 0, len(vals))
	for _, v := range vals {
		f, err := FrameCodec().Decode(v)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	return out, nil
}
