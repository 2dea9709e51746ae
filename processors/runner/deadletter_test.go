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
	"github.com/tapline/tapline/processors/pipeline"
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
	// The failing frame carries a planted secret: withheld, it must not leak, and
	// reprocessed, it must come out masked.
	var bad schemas.Frame
	for _, f := range victim.Frames {
		for _, p := range planted {
			if bad.SessionID == "" && !f.IsLifecycle() && bytes.Contains(f.Payload, []byte(p)) {
				bad = f
			}
		}
	}
	if bad.SessionID == "" {
		t.Fatal("no frame with a planted secret in the victim session")
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

	// A fixed build reprocesses the dead letter: the frame comes out as an
	// uninterrupted processor masks it, with a frame.reprocessed record; a dry run
	// emits nothing, and running it twice emits the same records again.
	fixed := *cfgA
	fixed.FrameHook = nil
	pcfg, err := fixed.pipelineConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := expectedFrame(t, pcfg, victim.Frames, bad.Seq)
	if !bytes.Contains(want.Payload, []byte("[masked:")) {
		t.Fatalf("the expected frame is not masked: %q", want.Payload)
	}
	// As read back from Kafka (Avro has no nil bytes).
	enc, err := schemas.FrameCodec().Encode(&want)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = schemas.FrameCodec().Decode(enc); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	framesBefore := len(readCommitted(t, brokers, cfgA.Topics.Frames))
	dry, err := Reprocess(ctx, &fixed, nil, ReprocessOptions{DryRun: true})
	if err != nil || len(dry) != 1 || dry[0].Status != ReprocessOK || dry[0].SessionID != bad.SessionID || dry[0].Seq != bad.Seq {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if n := len(readCommitted(t, brokers, cfgA.Topics.Frames)); n != framesBefore {
		t.Fatalf("the dry run emitted %d records", n-framesBefore)
	}
	if other, err := Reprocess(ctx, &fixed, nil, ReprocessOptions{SessionID: sessions[0].ID}); err != nil || len(other) != 0 {
		t.Fatalf("another session's reprocess: %+v %v", other, err)
	}
	for run := 1; run <= 2; run++ {
		got, err := Reprocess(ctx, &fixed, nil, ReprocessOptions{SessionID: bad.SessionID})
		if err != nil || len(got) != 1 || got[0].Status != ReprocessOK {
			t.Fatalf("reprocess run %d: %+v %v", run, got, err)
		}
		var versions []schemas.Frame
		for _, r := range readCommitted(t, brokers, cfgA.Topics.Frames) {
			if f, err := schemas.FrameCodec().Decode(r.Value); err == nil && f.SessionID == bad.SessionID && f.Seq == bad.Seq {
				versions = append(versions, f)
			}
		}
		if len(versions) != 1+run || canon(versions[len(versions)-1]) != canon(want) {
			t.Fatalf("run %d: %d versions of the frame, last\n%s\nwant\n%s", run, len(versions), canon(versions[len(versions)-1]), canon(want))
		}
		reprocessed := 0
		for _, r := range readCommitted(t, brokers, cfgA.Topics.Audit) {
			var a audit.Record
			if json.Unmarshal(r.Value, &a) == nil && a.Type == audit.TypeFrameReprocessed {
				reprocessed++
				if a.ID != bad.SessionID+"/"+strconv.FormatInt(bad.Seq, 10)+"/"+audit.TypeFrameReprocessed || a.UserSubject == "" {
					t.Errorf("audit record %+v", a)
				}
			}
		}
		if reprocessed != run {
			t.Errorf("run %d: %d frame.reprocessed records", run, reprocessed)
		}
	}
}

// expectedFrame is frame seq as a processor without failures masks it.
func expectedFrame(t *testing.T, cfg pipeline.Config, frames []schemas.Frame, seq int64) schemas.Frame {
	t.Helper()
	p, err := pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out pipeline.Output
	for _, f := range frames {
		if err := p.Frame(f, &out); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range out.Frames {
		if f.Seq == seq {
			return f
		}
	}
	t.Fatalf("no frame %d", seq)
	return schemas.Frame{}
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
