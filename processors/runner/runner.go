// Package runner runs the processors exactly once over Kafka: it consumes
// tapline.frames.raw in a consumer group with read_committed isolation and, in one
// transaction per batch (franz-go's GroupTransactSession), produces the masked frames,
// commands, session summaries and audit records (and their OCSF events, if enabled), the changed session states with a
// checkpoint to the state topic, and the group's offsets. Either all of a batch's
// effects are committed or none are; after a crash or a rebalance the new owner of a
// partition rebuilds its sessions from the state topic at exactly the committed
// offset. docs/processors.md explains the design.
package runner

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/metricsserver"
	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/ocsf"
	"github.com/tapline/tapline/processors/pipeline"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/registry"
)

// warmUp starts what is slow to start in every protocol (the SQL parser), so
// that the first frame needing it does not wait as long; it returns when done.
func warmUp() {
	for _, p := range protocol.All() {
		if w, ok := p.(protocol.Warming); ok {
			w.WarmUp()
		}
	}
}

// Run processes until ctx is cancelled (then it finishes the transaction in flight
// and leaves the group) or a non-recoverable error occurs. reg may be nil.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, reg prometheus.Registerer, extra ...kgo.Opt) error {
	if log == nil {
		log = slog.Default()
	}
	pcfg, err := cfg.pipelineConfig()
	if err != nil {
		return err
	}
	go warmUp()
	if pcfg.SigningKey == nil {
		log.Warn("processor: no signing_key configured: masked frames are written unsigned and verify reports them as unverifiable")
	} else {
		log.Info("processor: signing masked frames", "key", hex.EncodeToString(pcfg.SigningKey.Public().(ed25519.PublicKey)))
	}
	security, err := cfg.Kafka.Security.Opts(cfg.lookupEnv)
	if err != nil {
		return err
	}
	// TLS and SASL first, so that test options passed as extra can still override them.
	extra = append(security, extra...)
	r := &runner{cfg: cfg, log: log, pcfg: pcfg, extra: extra, parts: map[int32]*part{}, revoked: map[int32]bool{},
		assigned: map[int32]bool{}, tick: time.Second, metrics: newMetrics(reg), codecs: defaultCodecs()}
	if err := r.registerSchemas(ctx); err != nil {
		return err
	}
	adm, err := kadm.NewOptClient(r.baseOpts()...)
	if err != nil {
		return err
	}
	r.adm = adm
	defer adm.Close()
	if _, err := r.ensureTopics(ctx); err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			g = prometheus.DefaultGatherer
		}
		stop, err := metricsserver.Serve(cfg.Metrics.Listen, g, nil, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	opts := append(r.baseOpts(),
		kgo.ConsumerGroup(cfg.Kafka.Group),
		kgo.SessionTimeout(cfg.Kafka.SessionTimeout),
		kgo.ConsumeTopics(cfg.Topics.Raw),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(cfg.Kafka.TransactionalID),
		kgo.TransactionTimeout(cfg.Kafka.TransactionTimeout),
		kgo.RecordPartitioner(partitioner{state: cfg.Topics.State, byKey: kgo.StickyKeyPartitioner(nil)}),
		kgo.ProducerBatchMaxBytesFn(func(topic string) int32 {
			if topic == cfg.Topics.State {
				return 8 << 20
			}
			if topic == cfg.Topics.DeadLetter {
				return 2 << 20 // a raw record plus its dead-letter headers
			}
			return 1_000_000
		}),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onRevoked),
	)
	if cfg.Kafka.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.Kafka.InstanceID))
	}
	r.sess, err = kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return err
	}
	defer r.sess.Close()
	// Initialising the transactional producer fences a previous incarnation with the
	// same transactional id and aborts its open transaction now, rather than when it
	// times out; until then the group's offsets for its partitions stay unstable and
	// no one can consume them.
	if _, _, err := r.sess.Client().ProducerID(ctx); err != nil {
		return fmt.Errorf("initialise transactional producer %q: %w", cfg.Kafka.TransactionalID, err)
	}
	log.Info("processing", "raw", cfg.Topics.Raw, "group", cfg.Kafka.Group, "transactional_id", cfg.Kafka.TransactionalID,
		"state", cfg.Topics.State)
	return r.loop(ctx)
}

type runner struct {
	cfg     *Config
	log     *slog.Logger
	pcfg    pipeline.Config
	extra   []kgo.Opt
	adm     *kadm.Client
	sess    *kgo.GroupTransactSession
	tick    time.Duration
	metrics *metrics
	codecs  codecs

	parts map[int32]*part // loaded raw partitions

	mu       sync.Mutex
	revoked  map[int32]bool // revoked since the loop last looked
	assigned map[int32]bool // raw partitions this member owns
}

// part is a raw partition this processor owns, with its sessions.
type part struct {
	proc *pipeline.Processor
	next int64 // offset after the last record processed: what the group commits
}

func (r *runner) baseOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Kafka.Brokers...)}, r.extra...)
}

func (r *runner) newProcessor() *pipeline.Processor {
	p, err := pipeline.New(r.pcfg)
	if err != nil {
		panic(err) // the config was validated when the runner was built
	}
	return p
}

// onAssigned notes the partitions this member owns (their state is loaded with their
// first records, or by the idle sweep if none come). Called from the client's group
// goroutine.
func (r *runner) onAssigned(_ context.Context, _ *kgo.Client, got map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range got[r.cfg.Topics.Raw] {
		r.assigned[p] = true
	}
}

// onRevoked drops revoked partitions' state: it is reloaded from the state topic if
// they come back. Called from the client's group goroutine.
func (r *runner) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range lost[r.cfg.Topics.Raw] {
		r.revoked[p] = true
		delete(r.assigned, p)
	}
}

func (r *runner) applyRevocations() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.revoked {
		delete(r.parts, p)
	}
	clear(r.revoked)
}

func (r *runner) loop(ctx context.Context) error {
	lastSweep := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, r.tick)
		fetches := r.sess.PollRecords(pctx, r.cfg.Kafka.MaxPollRecords)
		cancel()
		if ctx.Err() != nil {
			return nil // nothing of this poll is committed; the next owner reads it again
		}
		if fetches.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.log.Warn("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		r.applyRevocations()
		now := time.Now()
		sweep := now.Sub(lastSweep) >= r.tick
		if fetches.NumRecords() == 0 && !sweep {
			continue
		}
		if sweep {
			lastSweep = now
		}
		if err := r.transact(ctx, fetches, now, sweep); err != nil {
			return err
		}
	}
}

// transact processes one batch in one transaction. A processing or produce error
// aborts it and is returned: the process exits and, restarted, redoes the batch
// (retrying at once would most likely hit the same error).
func (r *runner) transact(ctx context.Context, fetches kgo.Fetches, now time.Time, sweep bool) error {
	if err := r.load(ctx, fetches); err != nil {
		return err
	}
	// Finish the transaction even when asked to stop: a half-made one would only be
	// aborted and redone by the next owner.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Kafka.TransactionTimeout)
	defer cancel()
	var (
		produceMu  sync.Mutex
		produceErr error
		began      bool
		beginErr   error
	)
	// The transaction begins with its first record: a sweep that changes nothing
	// costs nothing.
	produce := func(rec *kgo.Record) {
		if !began {
			began, beginErr = true, r.sess.Begin()
		}
		if beginErr != nil {
			return
		}
		r.sess.Produce(tctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				produceMu.Lock()
				if produceErr == nil {
					produceErr = err
				}
				produceMu.Unlock()
			}
		})
	}
	fail := func(cause error) error {
		clear(r.parts) // state advanced past what is committed: reload it
		if !began || beginErr != nil {
			return cause
		}
		r.metrics.transactions.WithLabelValues("aborted").Inc()
		if _, err := r.sess.End(tctx, kgo.TryAbort); err != nil {
			return errors.Join(cause, fmt.Errorf("abort transaction: %w", err))
		}
		return cause
	}
	var out pipeline.Output
	touched := map[int32]bool{}
	// Partitions are independent: process them in parallel, then produce in order.
	type batch struct {
		p    int32
		in   []*kgo.Record
		out  []*kgo.Record
		err  error
		part *part
	}
	var batches []*batch
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic == r.cfg.Topics.Raw && len(fp.Records) > 0 {
			batches = append(batches, &batch{p: fp.Partition, in: fp.Records, part: r.parts[fp.Partition]})
		}
	})
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.out, b.err = r.processPartition(b.part, b.in)
		}()
	}
	wg.Wait()
	for _, b := range batches {
		if b.err != nil {
			return fail(b.err)
		}
		for _, rec := range b.out {
			produce(rec)
		}
		touched[b.p] = true
	}
	if sweep {
		if err := r.loadIdle(ctx); err != nil {
			return fail(err)
		}
		for _, p := range r.caughtUp(ctx) {
			r.parts[p].proc.Sweep(now, &out)
			if err := r.emit(&out, produce); err != nil {
				return fail(err)
			}
			out.Reset()
		}
	}
	for _, p := range r.sortedParts() {
		pt := r.parts[p]
		changes, err := pt.proc.TakeDirty()
		if err != nil {
			return fail(err)
		}
		if len(changes) == 0 && !touched[p] {
			continue
		}
		for _, c := range changes {
			rec, err := sessionStateRecord(r.cfg.Topics.State, p, c)
			if err != nil {
				return fail(err)
			}
			produce(rec)
		}
		if pt.next >= 0 {
			rec, err := checkpointRecord(r.cfg.Topics.Raw, r.cfg.Topics.State, p, pt.next)
			if err != nil {
				return fail(err)
			}
			produce(rec)
		}
	}
	if !began {
		return nil
	}
	if beginErr != nil {
		return fmt.Errorf("begin transaction: %w", beginErr)
	}
	if err := r.sess.Client().Flush(tctx); err != nil {
		return fail(err)
	}
	produceMu.Lock()
	perr := produceErr
	produceMu.Unlock()
	if perr != nil {
		return fail(fmt.Errorf("produce: %w", perr))
	}
	ending := time.Now()
	committed, err := r.sess.End(tctx, kgo.TryCommit)
	r.log.Debug("transaction", "frames", fetches.NumRecords(), "committed", committed,
		"produce", ending.Sub(now).Round(time.Microsecond), "end", time.Since(ending).Round(time.Microsecond))
	if err != nil {
		return fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		// A rebalance came in between: the group rewinds to its committed offsets, and
		// so does the state, by reloading it.
		r.log.Info("transaction aborted by a rebalance; reloading partition state")
		r.metrics.transactions.WithLabelValues("aborted").Inc()
		clear(r.parts)
		return nil
	}
	r.metrics.transactions.WithLabelValues("committed").Inc()
	r.metrics.sessions.Set(float64(r.sessionCount()))
	return nil
}

// processPartition runs one partition's records through its pipeline and returns
// the records to produce.
func (r *runner) processPartition(pt *part, in []*kgo.Record) ([]*kgo.Record, error) {
	var out pipeline.Output
	var dead []*kgo.Record
	for _, rec := range in {
		f, err := r.codecs.raw.Decode(rec.Value)
		if err != nil {
			out.Audit = append(out.Audit, undecodable(rec, err)) // counted and logged by emit
		} else if err := pt.proc.Frame(f, &out); err != nil {
			dead = append(dead, r.deadLetter(rec, &f, err))
		}
		pt.next = rec.Offset + 1
	}
	r.metrics.frames.Add(float64(len(in)))
	recs := make([]*kgo.Record, 0, out.Len()+len(dead))
	err := r.emit(&out, func(rec *kgo.Record) { recs = append(recs, rec) })
	return append(recs, dead...), err
}

// load makes sure every partition in the batch has its state loaded.
func (r *runner) load(ctx context.Context, fetches kgo.Fetches) error {
	want := map[int32]int64{}
	committed := r.sess.Client().CommittedOffsets()[r.cfg.Topics.Raw]
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic != r.cfg.Topics.Raw || len(fp.Records) == 0 || r.parts[fp.Partition] != nil {
			return
		}
		w := int64(-1)
		if eo, ok := committed[fp.Partition]; ok {
			w = eo.Offset
		}
		want[fp.Partition] = w
	})
	if len(want) == 0 {
		return nil
	}
	start := time.Now()
	got, err := r.loadPartitions(ctx, want)
	if err != nil {
		return err
	}
	for p, l := range got {
		r.parts[p] = &part{proc: l.proc, next: l.checkpoint}
		r.log.Info("partition state loaded", "partition", p, "sessions", l.proc.Sessions(), "offset", l.checkpoint,
			"took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// loadIdle loads the state of owned partitions that have had no records since they
// were assigned, so that their idle sessions can be swept too. Only partitions whose
// committed offset the group has fetched qualify (the state must match it); one with no
// committed offset at all has no state to sweep.
func (r *runner) loadIdle(ctx context.Context) error {
	committed := r.sess.Client().CommittedOffsets()[r.cfg.Topics.Raw]
	want := map[int32]int64{}
	r.mu.Lock()
	for p := range r.assigned {
		if eo, ok := committed[p]; ok && r.parts[p] == nil && !r.revoked[p] {
			want[p] = eo.Offset
		}
	}
	r.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	got, err := r.loadPartitions(ctx, want)
	if err != nil {
		return err
	}
	for p, l := range got {
		r.parts[p] = &part{proc: l.proc, next: l.checkpoint}
		r.log.Info("idle partition state loaded", "partition", p, "sessions", l.proc.Sessions(), "offset", l.checkpoint)
	}
	return nil
}

// caughtUp lists loaded partitions with nothing left to read: only there may idle
// sessions be abandoned (a backlog may still hold their frames).
func (r *runner) caughtUp(ctx context.Context) []int32 {
	if len(r.parts) == 0 {
		return nil
	}
	lso, err := r.adm.ListCommittedOffsets(ctx, r.cfg.Topics.Raw)
	if err != nil {
		r.log.Warn("list raw offsets for the idle sweep", "err", err)
		return nil
	}
	var out []int32
	for _, p := range r.sortedParts() {
		pt := r.parts[p]
		if o, ok := lso.Lookup(r.cfg.Topics.Raw, p); ok && o.Err == nil && pt.next >= 0 && pt.next >= o.Offset {
			out = append(out, p)
		}
	}
	return out
}

func (r *runner) sortedParts() []int32 {
	out := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (r *runner) sessionCount() int {
	n := 0
	for _, pt := range r.parts {
		n += pt.proc.Sessions()
	}
	return n
}

// emit turns a batch's outputs into records.
func (r *runner) emit(out *pipeline.Output, produce func(*kgo.Record)) error {
	t := r.cfg.Topics
	for i := range out.Frames {
		f := &out.Frames[i]
		v, err := r.codecs.frames.Encode(f)
		if err != nil {
			return fmt.Errorf("session %s seq %d: %w", f.SessionID, f.Seq, err)
		}
		produce(&kgo.Record{Topic: t.Frames, Key: []byte(f.SessionID), Value: v})
	}
	for i := range out.Commands {
		c := &out.Commands[i]
		v, err := r.codecs.commands.Encode(c)
		if err != nil {
			return fmt.Errorf("session %s command %d: %w", c.SessionID, c.CommandSeq, err)
		}
		produce(&kgo.Record{Topic: t.Commands, Key: []byte(c.SessionID), Value: v})
	}
	r.metrics.commands.Add(float64(len(out.Commands)))
	for i := range out.Sessions {
		s := &out.Sessions[i]
		v, err := r.codecs.sessions.Encode(s)
		if err != nil {
			return fmt.Errorf("session %s summary: %w", s.SessionID, err)
		}
		produce(&kgo.Record{Topic: t.Sessions, Key: []byte(s.SessionID), Value: v})
	}
	for i := range out.Audit {
		a := &out.Audit[i]
		v, err := a.Marshal()
		if err != nil {
			return err
		}
		if a.Type == audit.TypeIntegrity {
			r.metrics.alerts.WithLabelValues(a.Alert).Inc()
			r.log.Warn("integrity alert", "session_id", a.SessionID, "seq", a.Seq, "alert", a.Alert, "detail", a.AlertDetail)
		}
		produce(&kgo.Record{Topic: t.Audit, Key: []byte(a.SessionID), Value: v})
		if t.AuditOCSF == "" {
			continue
		}
		if v, err = ocsfValue(a); err != nil {
			return err
		}
		produce(&kgo.Record{Topic: t.AuditOCSF, Key: []byte(a.SessionID), Value: v})
	}
	return nil
}

// deadLetter logs and counts a frame the pipeline failed on (it has already put the
// frame, withheld, and the alert in the output) and returns the raw record for the
// dead-letter topic, written in the same transaction.
func (r *runner) deadLetter(rec *kgo.Record, f *schemas.Frame, err error) *kgo.Record {
	attrs := []any{"session_id", f.SessionID, "seq", f.Seq, "kind", f.Kind, "partition", rec.Partition, "offset", rec.Offset, "err", err}
	var fe *pipeline.FrameError
	if errors.As(err, &fe) && fe.Stack != nil {
		attrs = append(attrs, "stack", string(fe.Stack))
	}
	r.log.Error("frame processing failed: payload withheld, raw record dead-lettered; fix and run tapline process --reprocess", attrs...)
	r.metrics.failures.Inc()
	r.metrics.deadLetters.Inc()
	return DeadLetterRecord(r.cfg.Topics.DeadLetter, rec, f, err)
}

// codecs frame the Avro topics: Single-Object Encoding, or the Confluent framing
// with a schema registry's ids.
type codecs struct {
	raw, frames *schemas.Codec[schemas.Frame]
	commands    *schemas.Codec[schemas.Command]
	sessions    *schemas.Codec[schemas.Session]
}

func defaultCodecs() codecs {
	return codecs{raw: schemas.FrameCodec(), frames: schemas.FrameCodec(), commands: schemas.CommandCodec(), sessions: schemas.SessionCodec()}
}

// registerSchemas switches the codecs to the schema registry's ids, if one is
// configured. ctx bounds later id look-ups too (the process's lifetime).
func (r *runner) registerSchemas(ctx context.Context) error {
	if len(r.cfg.SchemaRegistry.URLs) == 0 {
		return nil
	}
	reg, err := registry.Open(r.cfg.SchemaRegistry, r.cfg.lookupEnv)
	if err != nil {
		return err
	}
	t := r.cfg.Topics
	c := codecs{raw: registry.Reader(ctx, reg, schemas.FrameCodec())}
	if c.frames, err = registry.Codec(ctx, reg, t.Frames, schemas.FrameCodec()); err != nil {
		return err
	}
	if c.commands, err = registry.Codec(ctx, reg, t.Commands, schemas.CommandCodec()); err != nil {
		return err
	}
	if c.sessions, err = registry.Codec(ctx, reg, t.Sessions, schemas.SessionCodec()); err != nil {
		return err
	}
	r.codecs = c
	r.log.Info("schemas registered", "registry", r.cfg.SchemaRegistry.URLs[0],
		"subjects", []string{registry.Subject(t.Frames), registry.Subject(t.Commands), registry.Subject(t.Sessions)})
	return nil
}

// ocsfValue is an audit record as an OCSF event.
func ocsfValue(a *audit.Record) ([]byte, error) {
	e, err := ocsf.FromAudit(a)
	if err != nil {
		return nil, fmt.Errorf("OCSF event for %s: %w", a.ID, err)
	}
	return e.Marshal()
}

// undecodable is the alert for a raw record that is not a frame.
func undecodable(rec *kgo.Record, err error) audit.Record {
	s := &schemas.Session{SessionID: string(rec.Key)}
	detail := fmt.Sprintf("%s partition %d offset %d: %v", rec.Topic, rec.Partition, rec.Offset, err)
	a := audit.Alert(s, integrity.Undecodable, detail, -1, rec.Timestamp)
	a.ID = fmt.Sprintf("%s/%d/%d/%s", rec.Topic, rec.Partition, rec.Offset, integrity.Undecodable)
	return a
}

// partitioner writes state records to the partition they name and everything else by
// key (Kafka's default murmur2 hash), so a session's records stay in order.
type partitioner struct {
	state string
	byKey kgo.Partitioner
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.state {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.byKey.ForTopic(topic)
}

type metrics struct {
	frames, commands prometheus.Counter
	failures         prometheus.Counter
	deadLetters      prometheus.Counter
	alerts           *prometheus.CounterVec
	transactions     *prometheus.CounterVec
	sessions         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		frames:       prometheus.NewCounter(prometheus.CounterOpts{Name: "tapline_process_frames_total", Help: "Raw frames processed (committed or not)."}),
		commands:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tapline_process_commands_total", Help: "Commands stitched."}),
		alerts:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_process_integrity_alerts_total", Help: "Integrity alerts by kind."}, []string{"kind"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_process_transactions_total", Help: "Transactions by result."}, []string{"result"}),
		sessions:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tapline_process_sessions", Help: "Sessions held in memory."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricFrameFailures,
			Help: "Frames the processors failed on (payload withheld, processing went on)."}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeadLetters,
			Help: "Raw records written to the dead-letter topic."}),
	}
	if reg != nil {
		reg.MustRegister(m.frames, m.commands, m.alerts, m.transactions, m.sessions, m.failures, m.deadLetters)
	}
	return m
}
