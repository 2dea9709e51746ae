package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// supervisor restarts a failing part of `tapline dev` (the processors, the sink, the
// query API) with exponential backoff, so one bad frame or a transient error does not
// take the whole system down with a bare stack trace. A part that keeps failing
// without ever running for a while is given up on: the error names the part and what
// it failed with, and dev stops with it.
type supervisor struct {
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
	// healthy is how long a part must run before its failure counts as a new one
	// (backoff and attempts start over).
	healthy time.Duration
	// attempts is how many failures in a row give up.
	attempts int
}

func newSupervisor(log *slog.Logger) *supervisor {
	return &supervisor{log: log, minBackoff: time.Second, maxBackoff: 30 * time.Second, healthy: time.Minute, attempts: 6}
}

// run runs fn until ctx ends (nil) or fn keeps failing (the last error).
func (s *supervisor) run(ctx context.Context, name string, fn func(context.Context) error) error {
	backoff, failures := s.minBackoff, 0
	for {
		began := time.Now()
		err := protect(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		if time.Since(began) >= s.healthy {
			backoff, failures = s.minBackoff, 0
		}
		failures++
		if failures >= s.attempts {
			return fmt.Errorf("%s failed %d times in a row, giving up: %w", name, failures, err)
		}
		attrs := []any{"part", name, "err", err, "restart_in", backoff, "failures", failures}
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, "stack", string(pe.stack))
		}
		s.log.Error("part failed; restarting it", attrs...)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

// panicError is a panic of a part, turned into an error.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

func protect(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}
