package replay

import (
	"context"
	"io"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
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

// Play plays a replay stream of a session of protocol name, read in the
// protocol's PlayFormat, to w with its recorded timing.
func (p *Player) Play(ctx context.Context, name schemas.Protocol, r io.Reader, w io.Writer) error {
	pl, err := protocol.Of[protocol.Playing](name)
	if err != nil {
		return err
	}
	return pl.Play(r, w, func(d time.Duration) error { return p.wait(ctx, d) })
}

// PlayFormat is the replay format that Play reads for protocol name, or false
// when its sessions do not play back in a terminal.
func PlayFormat(name schemas.Protocol) (string, bool) {
	pl, err := protocol.Of[protocol.Playing](name)
	if err != nil {
		return "", false
	}
	return pl.PlayFormat(), true
}
