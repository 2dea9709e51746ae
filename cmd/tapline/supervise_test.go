package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testSupervisor(log *lockedBuffer) *supervisor {
	return &supervisor{log: slog.New(slog.NewTextHandler(log, nil)), minBackoff: time.Millisecond,
		maxBackoff: 4 * time.Millisecond, healthy: time.Hour, attempts: 4}
}

func TestSupervisorRestartsAPanickingPart(t *testing.T) {
	var log lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	err := testSupervisor(&log).run(ctx, "processors", func(ctx context.Context) error {
		runs++
		if runs <= 2 {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic, as a bug would cause
		}
		cancel() // the third run is healthy until dev stops
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil || runs != 3 {
		t.Fatalf("run: %v after %d runs", err, runs)
	}
	out := log.String()
	if strings.Count(out, "part failed; restarting it") != 2 || !strings.Contains(out, "part=processors") ||
		!strings.Contains(out, "assignment to entry in nil map") {
		t.Errorf("log does not say what failed:\n%s", out)
	}
}

func TestSupervisorGivesUpNamingThePart(t *testing.T) {
	var log lockedBuffer
	runs := 0
	err := testSupervisor(&log).run(context.Background(), "sink", func(context.Context) error {
		runs++
		return errors.New("store is read-only")
	})
	if err == nil || runs != 4 || !strings.Contains(err.Error(), "sink failed 4 times in a row") || !strings.Contains(err.Error(), "store is read-only") {
		t.Fatalf("err %v after %d runs", err, runs)
	}
}
