package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/ssh"
)

// Player plays a replay stream in a terminal with its recorded timing.
type Player struct {
	Speed float64 // 2 plays twice as fast; <= 0 means 1
	// IdleLimit caps any one pause (after scaling by Speed); 0 means no cap.
	IdleLimit time.Duration
	// Sleep waits; nil means time.Sleep bounded by ctx. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p *Player) wait(ctx context.Context, d time.Duration) error {
	speed := p.Speed
	if speed <= 0 {
		speed = 1
	}
	d = time.Duration(float64(d) / speed)
	if p.IdleLimit > 0 {
		d = min(d, p.IdleLimit)
	}
	if d <= 0 {
		return ctx.Err()
	}
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxCastLine bounds one asciicast line (one output chunk, JSON-escaped).
const maxCastLine = 64 << 20

// PlayAsciicast writes an asciicast v2 stream's output to w as it was timed. Resize
// events are passed on as the xterm resize sequence.
func (p *Player) PlayAsciicast(ctx context.Context, r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxCastLine)
	if !sc.Scan() {
		return fmt.Errorf("asciicast: no header: %w", scanErr(sc))
	}
	var h ssh.CastHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
		return fmt.Errorf("asciicast: not a version 2 header: %q", sc.Text())
	}
	last := 0.0
	for sc.Scan() {
		var ev []json.RawMessage
		var t float64
		var code, data string
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 ||
			json.Unmarshal(ev[0], &t) != nil || json.Unmarshal(ev[1], &code) != nil || json.Unmarshal(ev[2], &data) != nil {
			return fmt.Errorf("asciicast: malformed event %q", sc.Text())
		}
		if err := p.wait(ctx, time.Duration((t-last)*float64(time.Second))); err != nil {
			return err
		}
		last = t
		switch code {
		case "o":
			_, err := io.WriteString(w, data)
			if err != nil {
				return err
			}
		case "r":
			var cols, rows int
			if _, err := fmt.Sscanf(data, "%dx%d", &cols, &rows); err == nil {
				fmt.Fprintf(w, "\x1b[8;%d;%dt", rows, cols)
			}
		}
	}
	return sc.Err()
}

func scanErr(sc *bufio.Scanner) error {
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// PlayPostgres renders a Postgres replay's NDJSON events as the text transcript,
// pausing between events as long as between their recorded times.
func (p *Player) PlayPostgres(ctx context.Context, r io.Reader, w io.Writer, flush func()) error {
	return postgres.WriteText(w, p.timed(ctx, r), flush)
}

func (p *Player) timed(ctx context.Context, r io.Reader) iter.Seq2[postgres.Event, error] {
	return func(yield func(postgres.Event, error) bool) {
		dec := json.NewDecoder(r)
		var last time.Time
		for {
			var ev postgres.Event
			if err := dec.Decode(&ev); err == io.EOF {
				return
			} else if err != nil {
				yield(ev, fmt.Errorf("replay stream: %w", err))
				return
			}
			if !last.IsZero() {
				if err := p.wait(ctx, ev.Time.Sub(last)); err != nil {
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
