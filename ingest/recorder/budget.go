package recorder

import (
	"errors"
	"sync"
	"time"
)

// errBufferFull is the cause when frames could not be buffered within the deadline.
var errBufferFull = errors.New("buffer of unacknowledged frames stayed full")

// budget bounds the bytes of frames handed to Kafka but not yet acknowledged.
// It is shared by all sessions; a frame waits for space until a deadline.
type budget struct {
	mu      sync.Mutex
	used    int64
	limit   int64
	waiting int
	wake    chan struct{} // closed and replaced on release while someone waits
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, wake: make(chan struct{})}
}

// acquire takes n bytes, waiting until deadline for space. A frame larger than
// the whole budget gets it when nothing else is buffered.
func (b *budget) acquire(n int64, deadline time.Time, stop <-chan struct{}) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if b.used+n <= b.limit || b.used == 0 {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		b.waiting++
		wake := b.wake
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		var err error
		select {
		case <-wake:
		case <-timer.C:
			err = errBufferFull
		case <-stop:
			err = ErrClosed
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.waiting > 0 {
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
