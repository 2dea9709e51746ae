// Package recorder turns the protocol messages an edge proxy relays into
// hash-chained frames and writes them to Kafka (tapline.frames.raw), failing
// closed: a session whose frames Kafka does not acknowledge is failed and
// must be terminated by the proxy. See docs/recording.md.
package recorder

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/schemas"
)

var (
	// ErrUnavailable means Kafka does not take frames: refuse new sessions and
	// terminate the session at hand. Errors wrap it together with the cause.
	ErrUnavailable = errors.New("recording unavailable")
	// ErrEnded is returned for calls on a session after End.
	ErrEnded = errors.New("session already ended")
	// ErrClosed is returned once the Recorder is closed.
	ErrClosed = errors.New("recorder closed")
)

// readyTTL is how long a Ready result (or a successful acknowledgement) stands.
const readyTTL = time.Second

// Meta describes a session when it starts.
type Meta struct {
	Protocol schemas.Protocol
	Start    schemas.SessionStart
}

// Recorder writes sessions' frames to Kafka. It is safe for concurrent use.
type Recorder struct {
	cfg       Config
	cl        *kgo.Client
	commit    *committer
	ownClient bool
	key       ed25519.PrivateKey
	log       *slog.Logger
	m         *metrics
	budget    *budget
	codec     *schemas.Codec[schemas.Frame]

	mu       sync.Mutex
	sessions map[*Session]struct{} // every session whose last frame is not settled yet
	closed   bool
	stop     chan struct{} // closed when Close gives up on unfinished sessions
	bg       sync.WaitGroup

	lastAck  atomic.Int64 // unix nanos of the latest acknowledged frame
	lastFail atomic.Int64 // unix nanos of the latest frame Kafka failed or did not ack in time

	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
}

// New returns a Recorder. It does not contact Kafka; use Ready for that.
func New(ctx context.Context, cfg Config, reg prometheus.Registerer) (*Recorder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("recorder config: %w", err)
	}
	key, err := signingKey(cfg)
	if err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:      cfg,
		cl:       cfg.Client,
		key:      key,
		log:      cfg.Logger.With("gateway_id", cfg.GatewayID),
		budget:   newBudget(cfg.MaxBufferedBytes),
		codec:    cfg.Codec,
		sessions: map[*Session]struct{}{},
		stop:     make(chan struct{}),
	}
	r.m = newMetrics(reg, r.budget)
	if r.cl == nil {
		opts := append(append(ProducerOpts(cfg), kgo.SeedBrokers(cfg.Brokers...), kgo.WithHooks(batchHook{r.m.batchRecords})), cfg.Opts...)
		if r.cl, err = kgo.NewClient(opts...); err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		r.ownClient = true
	}
	r.commit = newCommitter(r.cl, max(cfg.Linger, 0), roundBytes, max(cfg.Rounds, 0))
	r.bg.Add(1)
	go r.watchdog()
	return r, nil
}

func signingKey(cfg Config) (ed25519.PrivateKey, error) {
	if cfg.KeyFile != "" {
		return keyfile.LoadOrCreate(cfg.KeyFile)
	}
	cfg.Logger.Warn("no signing key file configured; session ends are signed with an ephemeral key nobody can trust later")
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

// PublicKey returns the key session.end signatures verify under.
func (r *Recorder) PublicKey() ed25519.PublicKey { return r.key.Public().(ed25519.PublicKey) }

// Mode returns the configured recording mode.
func (r *Recorder) Mode() Mode { return r.cfg.Mode }

// Start begins a session: it writes session.start and waits (in both modes)
// until Kafka acknowledged it. An error wrapping ErrUnavailable means the
// proxy must refuse the connection.
func (r *Recorder) Start(ctx context.Context, m Meta) (*Session, error) {
	s, err := r.newSession(m.Protocol)
	if err != nil {
		return nil, err
	}
	start := m.Start
	f, err := lifecycleFrame(schemas.KindSessionStart, lifecyclePayload{Start: &start})
	if err != nil {
		return nil, err
	}
	f.Start = &start
	if err := s.emitAndWait(ctx, []*schemas.Frame{f}); err != nil {
		if errors.Is(err, ErrUnavailable) {
			r.m.refused.Inc()
		}
		r.log.Warn("session refused: session.start not recorded", "session_id", s.id, "protocol", m.Protocol, "target", m.Start.Target, "err", err)
		return nil, err
	}
	s.markLive()
	if r.isClosed() {
		// Close did not see this session as live; end it here.
		_ = s.End(ctx, "gateway shutdown")
		return nil, ErrClosed
	}
	return s, nil
}

// Deny records a refused connection as a session of its own: session.denied
// (seq 0) and a signed session.end, and waits until Kafka acknowledged both.
func (r *Recorder) Deny(ctx context.Context, m Meta, reason string) error {
	s, err := r.newSession(m.Protocol)
	if err != nil {
		return err
	}
	start := m.Start
	denied, err := lifecycleFrame(schemas.KindSessionDenied, lifecyclePayload{Start: &start, Denial: reason})
	if err != nil {
		return err
	}
	denied.Start, denied.Denial = &start, reason
	end := func() (*schemas.Frame, error) { return s.endFrameLocked("denied: " + reason) }
	if err := s.emitAndWait(ctx, []*schemas.Frame{denied}, end); err != nil {
		r.log.Warn("denied session not recorded", "session_id", s.id, "protocol", m.Protocol, "target", m.Start.Target, "err", err)
		return err
	}
	r.m.denied.Inc()
	return nil
}

func (r *Recorder) newSession(p schemas.Protocol) (*Session, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("recorder: unknown protocol %q", p)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("recorder: session id: %w", err)
	}
	s := &Session{
		r:        r,
		id:       id.String(),
		key:      []byte(id.String()),
		proto:    p,
		counters: r.m.forProtocol(p),
		lastHash: schemas.ZeroHash,
		failed:   make(chan struct{}),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.sessions[s] = struct{}{}
	return s, nil
}

// finished drops a settled session from the recorder's bookkeeping.
func (r *Recorder) finished(s *Session) {
	r.mu.Lock()
	delete(r.sessions, s)
	r.mu.Unlock()
}

// lifecyclePayload is the JSON payload of session.start and session.denied.
type lifecyclePayload struct {
	Start  *schemas.SessionStart `json:"start"`
	Denial string                `json:"denial,omitempty"`
}

func lifecycleFrame(kind string, payload any) (*schemas.Frame, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("recorder: %s payload: %w", kind, err)
	}
	return &schemas.Frame{
		TS: time.Now(), Direction: schemas.Server, Kind: kind, Payload: b, Final: true,
	}, nil
}

// Ready reports whether Kafka takes frames: nil after a recent acknowledgement,
// otherwise the result of a metadata probe for the topic (leaders for all
// partitions), cached for a second. A produce failure within the last second
// with no acknowledgement since also counts as unavailable.
func (r *Recorder) Ready(ctx context.Context) error {
	if r.isClosed() {
		return ErrClosed
	}
	return r.ready(ctx)
}

func (r *Recorder) ready(ctx context.Context) error {
	now := time.Now()
	ack, fail := r.lastAck.Load(), r.lastFail.Load()
	if ack >= fail && now.Sub(time.Unix(0, ack)) < readyTTL {
		return nil
	}
	if fail > ack && now.Sub(time.Unix(0, fail)) < readyTTL {
		return fmt.Errorf("%w: a frame failed %s ago", ErrUnavailable, now.Sub(time.Unix(0, fail)).Round(time.Millisecond))
	}
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	if time.Since(r.readyAt) < readyTTL {
		return r.readyErr
	}
	r.readyErr = r.probe(ctx)
	r.readyAt = time.Now()
	return r.readyErr
}

func (r *Recorder) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(2*time.Second, r.cfg.ProduceTimeout))
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(r.cfg.Topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		return fmt.Errorf("%w: kafka metadata: %w", ErrUnavailable, err)
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("%w: kafka metadata: no answer for topic %s", ErrUnavailable, r.cfg.Topic)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return fmt.Errorf("%w: topic %s: %w", ErrUnavailable, r.cfg.Topic, err)
	}
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil || p.Leader < 0 {
			return fmt.Errorf("%w: topic %s partition %d has no leader (%v)", ErrUnavailable, r.cfg.Topic, p.Partition, err)
		}
	}
	return nil
}

func (r *Recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Recorder) snapshot() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.sessions))
	for s := range r.sessions {
		out = append(out, s)
	}
	return out
}

// Close ends live sessions with reason "gateway shutdown", waits (until ctx is
// done) for every session's frames to settle, including session ends still
// owed for sessions that failed, and closes the Kafka client if the Recorder
// built it. Sessions it could not settle are logged and counted in the error.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()

	var wg sync.WaitGroup
	for _, s := range r.snapshot() {
		if !s.isLive() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.End(ctx, "gateway shutdown"); err == nil {
				s.shutdown()
			}
		}()
	}
	wg.Wait()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(r.snapshot()) > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	left := r.snapshot()
	close(r.stop)
	r.bg.Wait()
	for _, s := range left {
		r.log.Error("session not settled at shutdown: its session.end is missing", "session_id", s.id, "err", s.Err())
		r.m.recovery.WithLabelValues("abandoned").Inc()
	}
	if r.ownClient {
		r.cl.Close()
	}
	if len(left) > 0 {
		return fmt.Errorf("recorder: %d sessions closed without session.end: %w", len(left), ctx.Err())
	}
	return nil
}

// watchdog fails sessions whose frames Kafka has not acknowledged for
// ProduceTimeout: with an idempotent producer, a request in flight to a dead
// broker is not failed by the client, so the recorder bounds the wait itself.
func (r *Recorder) watchdog() {
	defer r.bg.Done()
	every := min(max(r.cfg.ProduceTimeout/5, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			for _, s := range r.snapshot() {
				if since := s.stalledFor(now); since > r.cfg.ProduceTimeout {
					s.fail(fmt.Errorf("frames not acknowledged for %s", since.Round(time.Millisecond)))
				}
			}
		}
	}
}
