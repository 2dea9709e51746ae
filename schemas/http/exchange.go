package http

import (
	"sort"
	"strconv"
	"time"

	"github.com/tapline/tapline/schemas"
)

// DefaultKeepBody is how many bytes of each body (and each WebSocket message)
// an Exchange keeps for replay and export; sizes are always counted in full.
const DefaultKeepBody = 1 << 20

// Exchange is one request and its response, or one WebSocket session (the
// upgrade exchange and its messages), assembled from frames.
type Exchange struct {
	Channel  int64 `json:"channel"`
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`

	Request      *Head `json:"request,omitempty"`
	RequestBody  Body  `json:"request_body"`
	RequestEnd   *End  `json:"request_end,omitempty"`
	Response     *Head `json:"response,omitempty"`
	ResponseBody Body  `json:"response_body"`
	ResponseEnd  *End  `json:"response_end,omitempty"`

	// Started is when the request head was read, FirstByte when the response
	// head arrived, Ended the last frame's time.
	Started   time.Time `json:"started"`
	FirstByte time.Time `json:"first_byte,omitzero"`
	Ended     time.Time `json:"ended"`

	Messages []Message        `json:"messages,omitempty"`
	Masks    map[string]int64 `json:"masks,omitempty"`

	// pending is a head or end split into fragments, until its final fragment.
	Pending []byte `json:"pending,omitempty"`
}

// Body is a request or response body as recorded.
type Body struct {
	Data      []byte `json:"data,omitempty"`
	Size      int64  `json:"size"`
	Truncated bool   `json:"truncated,omitempty"`
	Frames    int    `json:"frames,omitempty"`
}

// Message is one WebSocket message (or close frame).
type Message struct {
	Seq       int64             `json:"seq"`
	Dir       schemas.Direction `json:"dir"`
	TS        time.Time         `json:"ts"`
	Binary    bool              `json:"binary,omitempty"`
	Data      []byte            `json:"data,omitempty"`
	Size      int64             `json:"size"`
	Truncated bool              `json:"truncated,omitempty"`
	Close     *Close            `json:"close,omitempty"`
	// open is true while later fragments of the message may follow.
	Open bool `json:"open,omitempty"`
}

// WebSocket reports whether the exchange upgraded to a WebSocket.
func (e *Exchange) WebSocket() bool { return e.Response != nil && e.Response.Status == 101 }

// Complete reports whether both the request and the response ended.
func (e *Exchange) Complete() bool { return e.RequestEnd != nil && e.ResponseEnd != nil }

// Conversation pairs a session's frames into exchanges, one frame at a time.
// Its exported fields are its state (a processor saves it with the session).
// Stitching, replay and export all use it, so they cannot disagree.
type Conversation struct {
	// KeepBody bounds the bytes kept per body and message (0: DefaultKeepBody,
	// negative: none, sizes only).
	KeepBody int                 `json:"keep_body,omitempty"`
	Open     map[int64]*Exchange `json:"open,omitempty"`
	// Problems lists payloads that did not decode (seq and reason).
	Problems []string `json:"problems,omitempty"`
}

func (c *Conversation) keep() int {
	switch {
	case c.KeepBody == 0:
		return DefaultKeepBody
	case c.KeepBody < 0:
		return 0
	}
	return c.KeepBody
}

// Add takes the next frame of the session and returns the exchange it
// completed, if any. Lifecycle frames and frames of other protocols are ignored.
func (c *Conversation) Add(f *schemas.Frame) *Exchange {
	if f.IsLifecycle() || !IsKind(f.Kind) {
		return nil
	}
	if c.Open == nil {
		c.Open = map[int64]*Exchange{}
	}
	e := c.Open[f.Channel]
	if e == nil {
		e = &Exchange{Channel: f.Channel, FirstSeq: f.Seq, Started: f.TS}
		c.Open[f.Channel] = e
	}
	e.LastSeq, e.Ended = f.Seq, f.TS
	for k, v := range f.Masks {
		if e.Masks == nil {
			e.Masks = map[string]int64{}
		}
		e.Masks[k] += v
	}
	switch f.Kind {
	case KindRequestBody:
		e.RequestBody.add(f.Payload, c.keep())
	case KindResponseBody:
		e.ResponseBody.add(f.Payload, c.keep())
	case KindWSText, KindWSBinary:
		e.addMessage(f, c.keep())
	case KindRequestComplete, KindResponseComplete:
		c.addComplete(e, f)
	default:
		c.addJSON(e, f)
	}
	if !e.Complete() {
		return nil
	}
	delete(c.Open, f.Channel)
	return e
}

// Flush returns the exchanges still open (the session ended without their
// ends), in order of their first frame, and forgets them.
func (c *Conversation) Flush() []*Exchange {
	out := make([]*Exchange, 0, len(c.Open))
	for _, e := range c.Open {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeq < out[j].FirstSeq })
	c.Open = nil
	return out
}

func (b *Body) add(p []byte, keep int) {
	b.Size += int64(len(p))
	b.Frames++
	room := keep - len(b.Data)
	if room < len(p) {
		b.Truncated = true
		p = p[:max(room, 0)]
	}
	b.Data = append(b.Data, p...)
}

func (e *Exchange) addMessage(f *schemas.Frame, keep int) {
	n := len(e.Messages)
	if f.Fragment == 0 || n == 0 || !e.Messages[n-1].Open {
		e.Messages = append(e.Messages, Message{Seq: f.Seq, Dir: f.Direction, TS: f.TS, Binary: f.Kind == KindWSBinary})
		n++
	}
	m := &e.Messages[n-1]
	m.Open = !f.Final
	m.Size += int64(len(f.Payload))
	room := keep - len(m.Data)
	p := f.Payload
	if room < len(p) {
		m.Truncated = true
		p = p[:max(room, 0)]
	}
	m.Data = append(m.Data, p...)
}

// addJSON handles heads, ends and closes, which may arrive in fragments.
func (c *Conversation) addJSON(e *Exchange, f *schemas.Frame) {
	p, ok := e.whole(f)
	if !ok {
		return
	}
	var err error
	switch f.Kind {
	case KindRequest:
		e.Request, err = DecodeHead(p)
		e.Started = f.TS
	case KindResponse:
		e.Response, err = DecodeHead(p)
		e.FirstByte = f.TS
	case KindRequestEnd:
		e.RequestEnd, err = DecodeEnd(p)
	case KindResponseEnd:
		e.ResponseEnd, err = DecodeEnd(p)
	case KindWSClose:
		var cl *Close
		if cl, err = DecodeClose(p); err == nil {
			e.Messages = append(e.Messages, Message{Seq: f.Seq, Dir: f.Direction, TS: f.TS, Close: cl})
		}
	}
	if err != nil {
		c.Problems = append(c.Problems, problem(f, err))
	}
}

// addComplete handles a head, end and whole body recorded as one frame, as
// if they had been three.
func (c *Conversation) addComplete(e *Exchange, f *schemas.Frame) {
	p, ok := e.whole(f)
	if !ok {
		return
	}
	h, end, body, err := DecodeComplete(p)
	if err != nil {
		c.Problems = append(c.Problems, problem(f, err))
		return
	}
	if f.Kind == KindRequestComplete {
		e.Request, e.Started, e.RequestEnd = h, f.TS, end
		if len(body) > 0 {
			e.RequestBody.add(body, c.keep())
		}
		return
	}
	e.Response, e.FirstByte, e.ResponseEnd = h, f.TS, end
	if len(body) > 0 {
		e.ResponseBody.add(body, c.keep())
	}
}

// whole returns a frame's payload once its final fragment arrived: the
// fragments so far are kept in Pending.
func (e *Exchange) whole(f *schemas.Frame) ([]byte, bool) {
	if f.Fragment == 0 && f.Final {
		return f.Payload, true
	}
	e.Pending = append(e.Pending, f.Payload...)
	if !f.Final {
		return nil, false
	}
	p := e.Pending
	e.Pending = nil
	return p, true
}

func problem(f *schemas.Frame, err error) string {
	return f.Kind + " at seq " + strconv.FormatInt(f.Seq, 10) + ": " + err.Error()
}

// Exchanges assembles a whole session's frames (in seq order) into exchanges,
// in order of their first frame, complete or not.
func Exchanges(frames []schemas.Frame, keepBody int) ([]*Exchange, []string) {
	c := Conversation{KeepBody: keepBody}
	var out []*Exchange
	for i := range frames {
		if e := c.Add(&frames[i]); e != nil {
			out = append(out, e)
		}
	}
	out = append(out, c.Flush()...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].FirstSeq < out[j].FirstSeq })
	return out, c.Problems
}
