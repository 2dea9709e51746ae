package edgelimit

import "sync"

// Background runs bounded work off the accept path, such as recording a denial:
// the refused client is answered at once instead of after a Kafka round trip,
// and at most n such jobs run at a time (Go blocks beyond that, which bounds
// memory when denials arrive faster than Kafka takes them).
type Background struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

// NewBackground runs at most n jobs at once.
func NewBackground(n int) *Background { return &Background{sem: make(chan struct{}, n)} }

// Go runs f in the background.
func (b *Background) Go(f func()) {
	b.sem <- struct{}{}
	b.wg.Add(1)
	go func() {
		defer func() { <-b.sem; b.wg.Done() }()
		f()
	}()
}

// Wait returns when every job has finished.
func (b *Background) Wait() { b.wg.Wait() }
