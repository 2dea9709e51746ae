package pipeline

import (
	"testing"

	"github.com/tapline/tapline/schemas"
)

// BenchmarkProcessor is the CPU cost of the processors without Kafka: decode a raw
// frame, check, mask, stitch, and encode every output (Avro, audit JSON, state JSON),
// on a mix of Postgres (simple and extended) and SSH sessions.
func BenchmarkProcessor(b *testing.B) {
	frames := interleaved(b, 300, 1)
	raw := make([][]byte, len(frames))
	for i := range frames {
		v, err := schemas.FrameCodec().Encode(&frames[i])
		if err != nil {
			b.Fatal(err)
		}
		raw[i] = v
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		p := newProcessor(b)
		var out Output
		for j, v := range raw {
			f, err := schemas.FrameCodec().Decode(v)
			if err != nil {
				b.Fatal(err)
			}
			p.Frame(f, &out)
			n++
			if j%1000 == 999 || j == len(raw)-1 {
				encodeAll(b, &out)
				if _, err := p.TakeDirty(); err != nil {
					b.Fatal(err)
				}
				out.Reset()
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "frames/s")
}

func encodeAll(b *testing.B, o *Output) {
	for i := range o.Frames {
		if _, err := schemas.FrameCodec().Encode(&o.Frames[i]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range o.Commands {
		if _, err := schemas.CommandCodec().Encode(&o.Commands[i]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range o.Sessions {
		if _, err := schemas.SessionCodec().Encode(&o.Sessions[i]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range o.Audit {
		if _, err := o.Audit[i].Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}
