package recorder

import (
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// Group commit. A produce request costs the broker and the gateway far more
// than one more record in it, and franz-go sends a request as soon as a
// record is buffered and one of its five in-flight slots is free: frames that
// trickled in from the sessions went out one or two per request. The
// committer holds back frames nobody waits for (SERVER frames; every frame in
// buffered mode) for at most linger, or until roundBytes are queued, and hands
// them to the client together with the next frame somebody waits for (a strict
// CLIENT frame, a lifecycle frame), which is never held behind a linger.
//
// So a strict select round trip (one Query, four answers) costs one request:
// the answers to one statement travel with the next statement.
//
// Rounds. What the committer hands over at once is a round. With rounds
// rounds unsettled, the next round waits until one settles: whatever arrives
// meanwhile, from every session, goes out together then. franz-go alone would
// send each of eight strict clients' statements in its own request as long as
// one of its five slots is free, and the broker's CPU per request is what
// strict mode spends most on. A caller waits at most one round trip more, and
// only when a round is already on its way; with one session at a time nothing
// waits at all. A round unsettled for longer than patience (a broker that is
// slow or gone) no longer holds the next one back: franz-go then holds the
// records, retrying them together as before, and a record's delivery timeout
// (counted from its timestamp) is not spent in the committer's queue.
//
// Order is kept: frames enter the queue under their session's lock, the queue
// is handed over in order, and the client keeps the order of a partition's
// records. A held frame counts as in flight for its session (the watchdog and
// End see it); End flushes the queue instead of waiting for the linger.
type committer struct {
	cl         *kgo.Client
	linger     time.Duration
	roundBytes int
	rounds     int           // rounds unsettled at most; 0: no limit
	patience   time.Duration // how long an unsettled round holds the next back

	mu       sync.Mutex
	queue    []pending
	bytes    int
	due      bool      // the queue should go as soon as a round may
	inFlight int       // rounds handed to the client and not settled
	started  time.Time // when the last round was handed over
	timer    *time.Timer
	last     map[string]int // group → its last record in merged, while merging
	merged   []batch
}

type pending struct {
	group   string // the session: its queued frames may share a record
	rec     *kgo.Record
	promise func(*kgo.Record, error)
}

// mergeBytes bounds a record that carries several frames. Frames of one
// session queued together share records up to it (schemas.HeaderFrames): the
// broker's and the client's work is largely per record, and a strict
// statement then travels in the same record as the answers to the one
// before. A frame this large or larger goes alone, as the only frame of its
// record.
const mergeBytes = 256 << 10

// round counts the records of one hand-over that Kafka has not settled.
type round struct {
	c    *committer
	left atomic.Int32
}

func newCommitter(cl *kgo.Client, linger time.Duration, roundBytes, rounds int) *committer {
	c := &committer{cl: cl, linger: linger, roundBytes: roundBytes, rounds: rounds, patience: roundPatience, last: map[string]int{}}
	c.timer = time.AfterFunc(time.Hour, c.flush)
	c.timer.Stop()
	return c
}

// produce hands rec to the client, with every record queued before it: at
// once when urgent (a caller waits for it) and a round may start, otherwise
// with the next urgent record, after linger, or once roundBytes are queued.
// promise runs when Kafka settled rec.
// Frames of one group (a session) queued together may share a record.
func (c *committer) produce(group string, rec *kgo.Record, urgent bool, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 && c.linger > 0 && !urgent {
		c.timer.Reset(c.linger)
	}
	c.queue = append(c.queue, pending{group, rec, promise})
	c.bytes += len(rec.Value)
	if urgent || c.linger <= 0 || c.bytes >= c.roundBytes {
		c.due = true
	}
	c.sendLocked()
}

// flush hands every queued record to the client as soon as a round may start.
func (c *committer) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.due = true
	c.sendLocked()
}

// roundPatience: an unsettled round this old lets the next one start.
const roundPatience = 10 * time.Millisecond

// sendLocked starts a round with the queue if it is due and the limit allows.
func (c *committer) sendLocked() {
	if !c.due || len(c.queue) == 0 {
		return
	}
	if c.rounds > 0 && c.inFlight >= c.rounds {
		if wait := c.patience - time.Since(c.started); wait > 0 {
			c.timer.Reset(wait) // flush again then, if no round settles first
			return
		}
	}
	c.timer.Stop()
	c.due = false
	c.inFlight++
	c.started = time.Now()
	r := &round{c: c}
	recs := c.mergeLocked()
	r.left.Store(int32(len(recs)))
	// The client's buffer limits sit above the recorder's budget, so Produce
	// does not block, here or when a settling round starts the next one on
	// the client's promise goroutine.
	for _, p := range recs {
		c.cl.Produce(context.Background(), p.rec, r.settled(p.promise))
	}
	clear(c.queue)
	clear(c.merged)
	c.queue, c.merged, c.bytes = c.queue[:0], c.merged[:0], 0
}

// mergeLocked returns the queue as records to produce: each group's frames
// in as few records as mergeBytes allows, in the group's order. A record is
// only ever extended by its group's next frame, so the frames of a session
// keep their order across its records, and records of different sessions
// (which may share a partition) need none between them.
func (c *committer) mergeLocked() []pending {
	if len(c.queue) < 2 {
		return c.queue
	}
	clear(c.last)
	for _, p := range c.queue {
		if i, ok := c.last[p.group]; ok && c.merged[i].fits(p) {
			c.merged[i].add(p)
			continue
		}
		c.last[p.group] = len(c.merged)
		c.merged = append(c.merged, batch{first: p})
	}
	out := c.queue[:0]
	for i := range c.merged {
		out = append(out, c.merged[i].pending())
	}
	return out
}

// batch collects consecutive frames of one group for one record.
type batch struct {
	first    pending
	value    []byte // the frames, length-prefixed, once there are two
	n        int
	promises []func(*kgo.Record, error)
}

func (b *batch) size() int {
	if b.n == 0 {
		return len(b.first.rec.Value)
	}
	return len(b.value)
}

func (b *batch) fits(p pending) bool {
	return b.size()+len(p.rec.Value)+2*binary.MaxVarintLen32 <= mergeBytes
}

func (b *batch) add(p pending) {
	if b.n == 0 {
		b.value = schemas.AppendFrameValue(make([]byte, 0, 2*(len(b.first.rec.Value)+len(p.rec.Value))), b.first.rec.Value)
		b.promises = append(b.promises, b.first.promise)
		b.n = 1
	}
	b.value = schemas.AppendFrameValue(b.value, p.rec.Value)
	b.promises = append(b.promises, p.promise)
	b.n++
}

// pending is the batch as one record, with one promise settling every frame.
func (b *batch) pending() pending {
	if b.n == 0 {
		return b.first
	}
	rec := &kgo.Record{Key: b.first.rec.Key, Value: b.value, Timestamp: b.first.rec.Timestamp,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderFrames, Value: strconv.AppendInt(nil, int64(b.n), 10)}}}
	promises := b.promises
	return pending{group: b.first.group, rec: rec, promise: func(r *kgo.Record, err error) {
		for _, p := range promises {
			p(r, err)
		}
	}}
}

// settled wraps a record's promise: the round's last settled record lets the
// next round start.
func (r *round) settled(promise func(*kgo.Record, error)) func(*kgo.Record, error) {
	return func(rec *kgo.Record, err error) {
		promise(rec, err)
		if r.left.Add(-1) > 0 {
			return
		}
		c := r.c
		c.mu.Lock()
		c.inFlight--
		c.sendLocked()
		c.mu.Unlock()
	}
}
