package recorder

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
}

type pending struct {
	rec     *kgo.Record
	promise func(*kgo.Record, error)
}

// round counts the records of one hand-over that Kafka has not settled.
type round struct {
	c    *committer
	left atomic.Int32
}

func newCommitter(cl *kgo.Client, linger time.Duration, roundBytes, rounds int) *committer {
	c := &committer{cl: cl, linger: linger, roundBytes: roundBytes, rounds: rounds, patience: roundPatience}
	c.timer = time.AfterFunc(time.Hour, c.flush)
	c.timer.Stop()
	return c
}

// produce hands rec to the client, with every record queued before it: at
// once when urgent (a caller waits for it) and a round may start, otherwise
// with the next urgent record, after linger, or once roundBytes are queued.
// promise runs when Kafka settled rec.
func (c *committer) produce(rec *kgo.Record, urgent bool, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 && c.linger > 0 && !urgent {
		c.timer.Reset(c.linger)
	}
	c.queue = append(c.queue, pending{rec, promise})
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
	r.left.Store(int32(len(c.queue)))
	// The client's buffer limits sit above the recorder's budget, so Produce
	// does not block, here or when a settling round starts the next one on
	// the client's promise goroutine.
	for _, p := range c.queue {
		c.cl.Produce(context.Background(), p.rec, r.settled(p.promise))
	}
	clear(c.queue)
	c.queue, c.bytes = c.queue[:0], 0
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
