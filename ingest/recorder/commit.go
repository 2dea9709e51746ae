package recorder

import (
	"context"
	"sync"
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
// CLIENT frame, a lifecycle frame), which is never held.
//
// So a strict select round trip (one Query, four answers) costs one request:
// the answers to one statement travel with the next statement. Under load,
// when all five of franz-go's requests are in flight, what arrives meanwhile
// forms the next batch, so many sessions' frames share a request.
//
// Order is kept: frames enter the queue under their session's lock, the queue
// is handed over in order, and the client keeps the order of a partition's
// records. A held frame counts as in flight for its session (the watchdog and
// End see it); End flushes the queue instead of waiting for the linger.
type committer struct {
	cl         *kgo.Client
	linger     time.Duration
	roundBytes int

	mu    sync.Mutex
	queue []pending
	bytes int
	timer *time.Timer
}

type pending struct {
	rec     *kgo.Record
	promise func(*kgo.Record, error)
}

func newCommitter(cl *kgo.Client, linger time.Duration, roundBytes int) *committer {
	c := &committer{cl: cl, linger: linger, roundBytes: roundBytes}
	c.timer = time.AfterFunc(time.Hour, c.flush)
	c.timer.Stop()
	return c
}

// produce hands rec to the client, at once when urgent (a caller waits for
// it) and otherwise with the next urgent record, after linger, or once
// roundBytes are queued. promise runs when Kafka settled rec.
func (c *committer) produce(rec *kgo.Record, urgent bool, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !urgent && c.linger > 0 {
		if len(c.queue) == 0 {
			c.timer.Reset(c.linger)
		}
		c.queue = append(c.queue, pending{rec, promise})
		c.bytes += len(rec.Value)
		if c.bytes >= c.roundBytes {
			c.sendLocked()
		}
		return
	}
	c.sendLocked()
	// The client's buffer limits sit above the recorder's budget, so Produce
	// does not block (here or in sendLocked).
	c.cl.Produce(context.Background(), rec, promise)
}

// flush hands every queued record to the client now.
func (c *committer) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendLocked()
}

func (c *committer) sendLocked() {
	if len(c.queue) == 0 {
		return
	}
	c.timer.Stop()
	for _, p := range c.queue {
		c.cl.Produce(context.Background(), p.rec, p.promise)
	}
	clear(c.queue)
	c.queue, c.bytes = c.queue[:0], 0
}
