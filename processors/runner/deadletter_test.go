package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/schemas"
)

// startWith is start with a metrics registry.
func startWith(t *testing.T, cfg *Config, reg *prometheus.Registry) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { r.done <- Run(ctx, cfg, log, reg) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// A frame the pipeline panics on does not stop its partition: the frame goes out
// withheld, one processing_failed alert and one dead-letter record are committed
// with it, later frames are processed, and a processor restarted half way commits
// exactly what an uninterrupted one does.
func TestFailingFrameIsContainedExactlyOnce(t *testing.T) {
	const raw = "raw"
	brokers := newFake(t, raw, 3)
	sessions := fixtureSessions(16, t0)
	victim := sessions[5]
	var bad schemas.Frame
	for _, f := range victim.Frames {
		if !f.IsLifecycle() && len(f.Payload) > 0 && f.Seq > 2 {
			bad = f
			break
		}
	}
	hook := func(f *schemas.Frame) {
		if f.SessionID == bad.SessionID && f.Seq == bad.Seq {
			panic("injected failure")
		}
	}
	frames := interleave(sessions, 7)
	cl := producer(t, brokers)
	half := len(frames) / 2

	// B: stopped and restarted half way; A: uninterrupted.
	cfgB := testConfig(t, brokers, "b", raw)
	cfgB.FrameHook = hook
	produceFrames(t, cl, raw, frames[:half])
	b := start(t, cfgB)
	waitCaughtUp(t, brokers, cfgB.Kafka.Group, raw, time.Minute, b.alive)
	b.stop(t)
	produceFrames(t, cl, raw, frames[half:])
	b = start(t, cfgB)
	waitCaughtUp(t, brokers, cfgB.Kafka.Group, raw, time.Minute, b.alive)
	b.stop(t)

	cfgA := testConfig(t, brokers, "a", raw)
	cfgA.FrameHook = hook
	reg := prometheus.NewRegistry()
	a := startWith(t, cfgA, reg)
	waitCaughtUp(t, brokers, cfgA.Kafka.Group, raw, time.Minute, a.alive)
	a.stop(t)

	outA, outB := collect(t, brokers, cfgA.Topics), collect(t, brokers, cfgB.Topics)
	if d := diff(outA, outB); len(d) > 0 {
		t.Errorf("restarted run differs from the uninterrupted one (%d differences), first: %v", len(d), d[:min(10, len(d))])
	}
	for _, o := range []*outputs{outA, outB} {
		if len(o.dups) > 0 {
			t.Errorf("duplicates: %v", o.dups[:min(10, len(o.dups))])
		}
		if l := o.leaks(); len(l) > 0 {
			t.Errorf("planted secrets in the outputs: %v", l)
		}
	}

	// The failed frame went out withheld; every frame of every session went out.
	f, ok := outB.frames["frame "+bad.SessionID+"/"+strconv.FormatInt(bad.Seq, 10)]
	if !ok || len(f.Payload) != 0 || f.Masks[schemas.MaskWithheld] != 1 {
		t.Errorf("failed frame out as %+v (found %v)", f, ok)
	}
	total := 0
	for _, s := range sessions {
		total += len(s.Frames)
	}
	if len(outB.frames) != total {
		t.Errorf("%d frames out, %d in", len(outB.frames), total)
	}

	// One alert, naming session, seq and error; the victim's session completed.
	var alerts []audit.Record
	for _, v := range outB.audit {
		var r audit.Record
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatal(err)
		}
		if r.Alert == integrity.ProcessingFailed {
			alerts = append(alerts, r)
		}
	}
	if len(alerts) != 1 || alerts[0].SessionID != bad.SessionID || alerts[0].Seq != bad.Seq || !strings.Contains(alerts[0].AlertDetail, "injected failure") {
		t.Errorf("processing_failed alerts: %+v", alerts)
	}
	for _, s := range sessions {
		sum := outB.final[s.ID]
		want := schemas.StatusEnded
		if s.Frames[0].Kind == schemas.KindSessionDenied {
			want = schemas.StatusDenied
		}
		if sum.Status != want || sum.Frames != int64(len(s.Frames)) || sum.SignatureOK == nil || !*sum.SignatureOK {
			t.Errorf("session %s: summary %+v", s.ID, sum)
		}
	}

	// The raw record is dead-lettered once per run, unchanged, with its origin.
	for _, topic := range []string{cfgA.Topics.DeadLetter, cfgB.Topics.DeadLetter} {
		dl := readCommitted(t, brokers, topic)
		if len(dl) != 1 {
			t.Fatalf("%s: %d records, want 1", topic, len(dl))
		}
		rec := dl[0]
		want, err := schemas.FrameCodec().Encode(&bad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Value, want) || string(rec.Key) != bad.SessionID {
			t.Errorf("%s: the dead-lettered record is not the raw one", topic)
		}
		if DeadLetterHeader(rec, HeaderRawTopic) != raw || DeadLetterHeader(rec, HeaderSessionID) != bad.SessionID ||
			DeadLetterHeader(rec, HeaderSeq) != strconv.FormatInt(bad.Seq, 10) ||
			!strings.Contains(DeadLetterHeader(rec, HeaderError), "injected failure") ||
			DeadLetterHeader(rec, HeaderRawPartition) == "" || DeadLetterHeader(rec, HeaderRawOffset) == "" {
			t.Errorf("%s: headers %v", topic, rec.Headers)
		}
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, MetricDeadLetters)); n != 1 {
		t.Errorf("%s = %v, want 1", MetricDeadLetters, n)
	}
}

// mustCounter finds a registered counter by name.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "copy"}, func() float64 {
				return mf.GetMetric()[0].GetCounter().GetValue()
			})
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}
