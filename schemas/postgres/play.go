package postgres

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"time"
)

// PlayFormat: a terminal plays a Postgres session as its text transcript, built
// from the JSON events (protocol.Playing).
func (Protocol) PlayFormat() string { return "json" }

// Play renders a replay's NDJSON events as the text transcript, waiting between
// events as long as between their recorded times.
func (Protocol) Play(r io.Reader, w io.Writer, wait func(time.Duration) error) error {
	return WriteText(w, timed(r, wait), nil)
}

func timed(r io.Reader, wait func(time.Duration) error) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		dec := json.NewDecoder(r)
		var last time.Time
		for {
			var ev Event
			if err := dec.Decode(&ev); err == io.EOF {
				return
			} else if err != nil {
				yield(ev, fmt.Errorf("replay stream: %w", err))
				return
			}
			if !last.IsZero() {
				if err := wait(ev.Time.Sub(last)); err != nil {
					yield(ev, err)
					return
				}
			}
			last = ev.Time
			if !yield(ev, nil) {
				return
			}
		}
	}
}
