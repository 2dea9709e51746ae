package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/registry"
)

// WriterConfig configures the sink's Kafka side and batching.
type WriterConfig struct {
	Brokers []string `yaml:"brokers"`
	Group   string   `yaml:"group"` // consumer group; default "tapline-sink"
	// InstanceID enables static group membership (e.g. the pod name): a sink that
	// restarts under the same id takes its partitions back at once instead of
	// waiting for the group to notice the old member's death.
	InstanceID     string        `yaml:"instance_id"`
	SessionTimeout time.Duration `yaml:"session_timeout"` // group session timeout; default 45s
	FramesTopic    string        `yaml:"frames_topic"`    // default tapline.frames
	CommandsTopic  string        `yaml:"commands_topic"`  // default tapline.commands
	SessionsTopic  string        `yaml:"sessions_topic"`  // default tapline.sessions

	BatchRows  int           `yaml:"batch_rows"`  // flush at this many records; default 10000
	BatchBytes int           `yaml:"batch_bytes"` // or this many value bytes; default 16 MiB
	BatchWait  time.Duration `yaml:"batch_wait"`  // or this long after the batch's first record; default 1s

	// FetchMaxBytes bounds one fetch response (kgo.FetchMaxBytes); with
	// MaxConcurrentFetches it bounds what the client buffers while the writer is
	// busy or retrying. Defaults 16 MiB and 2.
	FetchMaxBytes        int32 `yaml:"fetch_max_bytes"`
	MaxConcurrentFetches int   `yaml:"max_concurrent_fetches"`

	RetryMin time.Duration `yaml:"retry_min"` // first backoff after a failed insert; default 250ms
	RetryMax time.Duration `yaml:"retry_max"` // backoff cap; default 30s

	// ShutdownFlush bounds the last flush when the context ends; default 30s.
	ShutdownFlush time.Duration `yaml:"shutdown_flush"`

	// Opts are extra client options (tests: kfake, short timeouts).
	Opts []kgo.Opt `yaml:"-"`
	// Registry resolves the schema ids of Confluent-framed values (the processors'
	// schema_registry); nil reads Single-Object Encoding only.
	Registry *registry.Registry `yaml:"-"`
}

func (c *WriterConfig) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Group, "tapline-sink")
	def(&c.FramesTopic, schemas.TopicFrames)
	def(&c.CommandsTopic, schemas.TopicCommands)
	def(&c.SessionsTopic, schemas.TopicSessions)
	if c.BatchRows <= 0 {
		c.BatchRows = 10000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 16 << 20
	}
	if c.BatchWait <= 0 {
		c.BatchWait = time.Second
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 16 << 20
	}
	if c.MaxConcurrentFetches <= 0 {
		c.MaxConcurrentFetches = 2
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 250 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.ShutdownFlush <= 0 {
		c.ShutdownFlush = 30 * time.Second
	}
}

// Writer consumes the processed topics and writes them to a Store in batches.
// Offsets are committed only after the store acknowledged the batch; while the store
// fails, the writer retries the same batch with backoff and polls at most one more batch, so Kafka
// holds the backlog rather than memory.
type Writer struct {
	cfg     WriterConfig
	store   Store
	cl      *kgo.Client
	metrics *writerMetrics

	frames   *schemas.Codec[schemas.Frame]
	commands *schemas.Codec[schemas.Command]
	sessions *schemas.Codec[schemas.Session]
}

// NewWriter creates the consumer; Run drives it. reg may be nil.
func NewWriter(cfg WriterConfig, store Store, reg prometheus.Registerer) (*Writer, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("sink: no Kafka brokers configured")
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.FramesTopic, cfg.CommandsTopic, cfg.SessionsTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the batch in hand is written and committed, so a
		// partition never moves with uncommitted rows half-written.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(cfg.FetchMaxBytes),
		kgo.MaxConcurrentFetches(cfg.MaxConcurrentFetches),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("sink: kafka client: %w", err)
	}
	w := &Writer{cfg: cfg, store: store, cl: cl, metrics: newWriterMetrics(reg),
		frames: schemas.FrameCodec(), commands: schemas.CommandCodec(), sessions: schemas.SessionCodec()}
	if cfg.Registry != nil {
		ctx := context.Background() // id look-ups are cached; each is bounded by the client's timeout
		w.frames = registry.Reader(ctx, cfg.Registry, w.frames)
		w.commands = registry.Reader(ctx, cfg.Registry, w.commands)
		w.sessions = registry.Reader(ctx, cfg.Registry, w.sessions)
	}
	return w, nil
}

// pending is the batch being assembled and the records it came from.
type pending struct {
	batch   Batch
	records []*kgo.Record
	bytes   int
	started time.Time
}

func (p *pending) empty() bool { return len(p.records) == 0 }

// Run consumes until ctx ends, then flushes what it holds (bounded by ShutdownFlush)
// and closes the client.
//
// One batch is written (inserted, then its offsets committed) while the next is
// polled and decoded: decoding takes the sink's CPU while an insert mostly waits on
// the store, so the two overlap. A full batch waits for the one being written, so
// at most two are held, commits stay in batch order, and while the store fails
// nothing more is polled.
func (w *Writer) Run(ctx context.Context) error {
	defer func() {
		w.cl.AllowRebalance() // leaving the group waits for a blocked rebalance
		w.cl.Close()
	}()
	p := &pending{}
	var writing *flushing
	for {
		if ctx.Err() != nil {
			return w.shutdown(writing, p)
		}
		if writing.ended() {
			if err := writing.wait(); err != nil {
				return w.shutdown(writing, p) // flush fails only when ctx ends
			}
			writing = nil
		}
		if p.empty() && writing == nil {
			w.cl.AllowRebalance()
		}
		w.poll(writing.pollContext(ctx), p)
		if p.empty() || !w.full(p) {
			continue
		}
		if err := writing.wait(); err != nil {
			return w.shutdown(writing, p)
		}
		writing = w.startFlush(ctx, p)
		p = &pending{}
		w.metrics.pending.Set(0)
	}
}

func (w *Writer) full(p *pending) bool {
	return len(p.records) >= w.cfg.BatchRows || p.bytes >= w.cfg.BatchBytes || time.Since(p.started) >= w.cfg.BatchWait
}

// flushing is a batch being written in the background.
type flushing struct {
	p   *pending
	end chan struct{} // closed when the write has ended, err set
	err error
	// polls is the context of polls made meanwhile: it also ends with the write,
	// so that an idle sink comes back to allow rebalances (BlockRebalanceOnPoll)
	// once nothing is in hand, not when the next record arrives.
	polls context.Context
}

func (w *Writer) startFlush(ctx context.Context, p *pending) *flushing {
	polls, stopPolls := context.WithCancel(ctx)
	f := &flushing{p: p, end: make(chan struct{}), polls: polls}
	go func() {
		f.err = w.flush(ctx, p)
		close(f.end)
		stopPolls()
	}()
	return f
}

// wait returns the write's result once it has ended; nil for no write. A write
// that ended in error keeps its batch for shutdown to try again.
func (f *flushing) wait() error {
	if f == nil {
		return nil
	}
	<-f.end
	return f.err
}

func (f *flushing) ended() bool {
	if f == nil {
		return false
	}
	select {
	case <-f.end:
		return true
	default:
		return false
	}
}

// pollContext is the context for a poll: ctx, or with a write in flight, one that
// also ends with the write.
func (f *flushing) pollContext(ctx context.Context) context.Context {
	if f == nil {
		return ctx
	}
	return f.polls
}

// poll adds records to p, waiting at most until p's deadline.
func (w *Writer) poll(ctx context.Context, p *pending) {
	pollCtx := ctx
	if !p.empty() {
		var cancel context.CancelFunc
		pollCtx, cancel = context.WithDeadline(ctx, p.started.Add(w.cfg.BatchWait))
		defer cancel()
	}
	fetches := w.cl.PollRecords(pollCtx, w.cfg.BatchRows-len(p.records))
	fetches.EachError(func(topic string, part int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		slog.Warn("sink: fetch error", "topic", topic, "partition", part, "err", err)
	})
	fetches.EachRecord(func(r *kgo.Record) {
		if p.empty() {
			p.started = time.Now()
		}
		p.records = append(p.records, r)
		p.bytes += len(r.Value)
		w.decode(r, &p.batch)
	})
	w.metrics.pending.Set(float64(len(p.records)))
}

// decode adds a record's row to the batch. A value that does not decode is logged
// with its coordinates and skipped (it stays in Kafka for its retention): one bad
// record must not stop every session's recording from reaching the store.
func (w *Writer) decode(r *kgo.Record, b *Batch) {
	if err := w.decodeRecord(r, b); err != nil {
		w.metrics.rejected.WithLabelValues(r.Topic).Inc()
		slog.Error("sink: skipping undecodable record; it stays in Kafka for its retention", "topic", r.Topic, "partition", r.Partition,
			"offset", r.Offset, "err", err)
	}
}

// decodeRecord decodes r into b; a decoder panic is an error like any other.
func (w *Writer) decodeRecord(r *kgo.Record, b *Batch) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("decoder panicked: %v", v)
		}
	}()
	switch r.Topic {
	case w.cfg.FramesTopic:
		var f schemas.Frame
		if f, err = w.frames.Decode(r.Value); err == nil {
			b.Frames = append(b.Frames, f)
		}
	case w.cfg.CommandsTopic:
		var c schemas.Command
		if c, err = w.commands.Decode(r.Value); err == nil {
			b.Commands = append(b.Commands, c)
		}
	case w.cfg.SessionsTopic:
		var s schemas.Session
		if s, err = w.sessions.Decode(r.Value); err == nil {
			b.Sessions = append(b.Sessions, s)
		}
	default:
		err = errors.New("unexpected topic")
	}
	return err
}

// flush writes p to the store, retrying with exponential backoff until it succeeds
// or ctx ends, then commits p's offsets and resets p.
func (w *Writer) flush(ctx context.Context, p *pending) error {
	p.batch.Token = BatchToken(p.records)
	backoff := w.cfg.RetryMin
	var t0 time.Time
	for attempt := 1; ; attempt++ {
		t0 = time.Now()
		err := w.store.Insert(ctx, &p.batch)
		w.metrics.insertSeconds.Observe(time.Since(t0).Seconds())
		if err == nil {
			break
		}
		w.metrics.batches.WithLabelValues("error").Inc()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		slog.Warn("sink: insert failed; retrying the same batch", "attempt", attempt, "records", len(p.records),
			"backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.cfg.RetryMax)
	}
	slog.Debug("sink: batch stored", "records", len(p.records), "bytes", p.bytes,
		"age", time.Since(p.started), "insert", time.Since(t0))
	w.metrics.batches.WithLabelValues("ok").Inc()
	w.metrics.rows.WithLabelValues(TableFrames).Add(float64(len(p.batch.Frames)))
	w.metrics.rows.WithLabelValues(TableCommands).Add(float64(len(p.batch.Commands)))
	w.metrics.rows.WithLabelValues(TableSessions).Add(float64(len(p.batch.Sessions)))
	if err := w.cl.CommitRecords(ctx, p.records...); err != nil {
		// The rows are stored; the records will be read again after a rebalance or
		// restart and collapse on the tables' keys.
		w.metrics.commitErrors.Inc()
		slog.Warn("sink: offset commit failed after a stored batch", "records", len(p.records), "err", err)
	}
	*p = pending{}
	return nil
}

// shutdown waits for the batch being written and flushes, in order, what did not
// reach the store: the written batch if its write was cut short (flush empties a
// batch it stored), then p.
func (w *Writer) shutdown(writing *flushing, p *pending) error {
	batches := []*pending{p}
	if writing != nil {
		_ = writing.wait() // cut short or not, its batch says what is left
		batches = []*pending{writing.p, p}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownFlush)
	defer cancel()
	for _, b := range batches {
		if b.empty() {
			continue
		}
		if err := w.flush(ctx, b); err != nil {
			slog.Warn("sink: could not flush the last batch; its records will be read again", "records", len(b.records), "err", err)
			return nil // a later batch must not commit past this one
		}
	}
	return nil
}

// BatchToken names a batch by its records' topic/partition/offset ranges, so that
// the same records batched the same way (a retry) carry the same
// insert_deduplication_token. Hashed to keep it short whatever the partition count.
func BatchToken(records []*kgo.Record) string {
	type tp struct {
		topic string
		part  int32
	}
	ranges := map[tp][2]int64{}
	for _, r := range records {
		k := tp{r.Topic, r.Partition}
		rg, ok := ranges[k]
		if !ok {
			rg = [2]int64{r.Offset, r.Offset}
		}
		rg[0], rg[1] = min(rg[0], r.Offset), max(rg[1], r.Offset)
		ranges[k] = rg
	}
	parts := make([]string, 0, len(ranges))
	for k, rg := range ranges {
		parts = append(parts, fmt.Sprintf("%s:%d:%d-%d", k.topic, k.part, rg[0], rg[1]))
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return "kafka-" + hex.EncodeToString(sum[:16])
}

type writerMetrics struct {
	rows          *prometheus.CounterVec
	batches       *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	insertSeconds prometheus.Histogram
	pending       prometheus.Gauge
	commitErrors  prometheus.Counter
}

func newWriterMetrics(reg prometheus.Registerer) *writerMetrics {
	m := &writerMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_sink_rows_total",
			Help: "Rows written to ClickHouse, by table."}, []string{"table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_sink_batches_total",
			Help: "Batch insert attempts, by result."}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_sink_records_rejected_total",
			Help: "Records skipped because their value did not decode, by topic."}, []string{"topic"}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tapline_sink_insert_seconds",
			Help: "Time to insert one batch.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tapline_sink_pending_records",
			Help: "Records read but not yet written."}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "tapline_sink_commit_errors_total",
			Help: "Offset commits that failed after their batch was stored."}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.batches, m.rejected, m.insertSeconds, m.pending, m.commitErrors)
	}
	return m
}
