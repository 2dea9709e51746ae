package ssh

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/tapline/tapline/schemas/protocol"
	"io"
	"iter"
	"math"
	"unicode/utf8"
)

// Asciicast v2 defaults for a terminal whose pty-req was not recorded.
const (
	defaultCols = 80
	defaultRows = 24
)

// CastHeader is the first line of an asciicast v2 file.
type CastHeader struct {
	Version   int               `json:"version"`
	Width     uint32            `json:"width"`
	Height    uint32            `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// cast writes one terminal channel of an SSH session as asciicast v2: the header
// once the channel is known (its shell or exec request, sized by its pty-req), then
// [t, "o", data] for the server's output on it and [t, "r", "COLSxROWS"] for window
// changes, t in seconds since that request.
type cast struct {
	w        *bufio.Writer
	enc      *json.Encoder
	lastT    float64
	opt      protocol.ReplayOptions
	title    string
	pty      map[int64]Event // last pty-req per channel
	chosen   bool
	channel  int64
	t0       float64
	pending  []byte // an incomplete UTF-8 sequence held for the next chunk
	anyStart int64
}

// WriteAsciicast writes an SSH session's terminal as asciicast v2. opt.Channel picks
// the channel; by default the first shell, or exec with a pty. Output of exec
// channels without a pty is not a terminal: the text and json formats show it.
func WriteAsciicast(w io.Writer, events iter.Seq2[Event, error], opt protocol.ReplayOptions, flush func()) error {
	bw := bufio.NewWriter(w)
	c := &cast{w: bw, enc: json.NewEncoder(bw), opt: opt, pty: map[int64]Event{}}
	c.enc.SetEscapeHTML(false)
	for ev, err := range events {
		if err != nil {
			return err
		}
		if err := c.event(&ev); err != nil {
			return err
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	if !c.chosen {
		// No terminal in this session (yet): still a valid, empty recording.
		if err := c.header(Event{}, c.anyStart); err != nil {
			return err
		}
	}
	if len(c.pending) > 0 {
		if err := c.output(c.lastT, nil, true); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

func (c *cast) event(ev *Event) error {
	switch {
	case ev.Type == "session.start" || ev.Type == "session.denied":
		c.anyStart = ev.Time.Unix()
		if ev.Start != nil {
			c.title = fmt.Sprintf("%s@%s", ev.Start.Subject, ev.Start.Target)
		}
	case ev.Type == "request" && ev.Request == "pty-req":
		c.pty[ev.Channel] = *ev
	case ev.Type == "request" && !c.chosen && c.terminal(ev):
		return c.choose(ev)
	case !c.chosen || ev.Channel != c.channel:
	case ev.Type == "output":
		return c.output(c.since(ev), []byte(ev.Data), false)
	case ev.Type == "request" && ev.Request == "window-change":
		return c.line(c.since(ev), "r", fmt.Sprintf("%dx%d", ev.Cols, ev.Rows))
	}
	return nil
}

// terminal reports whether a request makes its channel the one to play: the chosen
// channel's shell or exec, else the first shell, or exec with a pty (ssh -t).
func (c *cast) terminal(ev *Event) bool {
	if ev.Request != "shell" && ev.Request != "exec" {
		return false
	}
	if c.opt.Channel != nil {
		return *c.opt.Channel == ev.Channel
	}
	_, pty := c.pty[ev.Channel]
	return ev.Request == "shell" || pty
}

func (c *cast) choose(ev *Event) error {
	c.chosen, c.channel = true, ev.Channel
	c.t0 = seconds(ev)
	return c.header(c.pty[ev.Channel], ev.Time.Unix())
}

func (c *cast) header(pty Event, ts int64) error {
	h := CastHeader{Version: 2, Width: pty.Cols, Height: pty.Rows, Timestamp: ts, Title: c.title}
	if h.Width == 0 {
		h.Width = defaultCols
	}
	if h.Height == 0 {
		h.Height = defaultRows
	}
	if pty.Term != "" {
		h.Env = map[string]string{"TERM": pty.Term}
	}
	return c.enc.Encode(h)
}

func seconds(ev *Event) float64 { return float64(ev.Time.UnixMicro()) / 1e6 }

func (c *cast) since(ev *Event) float64 {
	return math.Round(max(seconds(ev)-c.t0, 0)*1e6) / 1e6
}

// output emits data as one "o" event, holding back a UTF-8 sequence cut at the
// chunk's end so that a character split across two SSH packets stays whole.
func (c *cast) output(t float64, data []byte, last bool) error {
	b := append(c.pending, data...)
	c.pending = nil
	if !last {
		cut := incompleteTail(b)
		c.pending = append([]byte(nil), b[cut:]...)
		b = b[:cut]
	}
	if len(b) == 0 {
		return nil
	}
	return c.line(t, "o", string(b))
}

// incompleteTail returns where a trailing, not yet complete UTF-8 sequence starts
// (len(b) when there is none).
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

func (c *cast) line(t float64, code, data string) error {
	c.lastT = t
	return c.enc.Encode([]any{t, code, data})
}
