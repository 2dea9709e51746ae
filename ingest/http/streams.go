package httpproxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// wsFraming is how the messages of this exchange's WebSocket are recorded:
// nil for whole messages, or the target's dialect for its subprotocol.
func (x *exchange) wsFraming(subprotocol string) StreamFraming {
	d := x.s.dialect(x.up.name)
	if d == nil || d.Messages == nil {
		return nil
	}
	return d.Messages(subprotocol)
}

// record records frames in one direction: from the agent, acknowledged (in
// strict mode) before the caller forwards them.
func (x *exchange) record(ctx context.Context, dir schemas.Direction, frames []Frame) error {
	sess := x.ls.sess
	if dir == schemas.Server {
		for _, f := range frames {
			if err := sess.Server(f.Kind, x.ch, f.Payload); err != nil {
				return err
			}
		}
		return nil
	}
	switch len(frames) {
	case 0:
		return nil
	case 1:
		return sess.Client(ctx, frames[0].Kind, x.ch, frames[0].Payload)
	}
	msgs := make([]recorder.Message, len(frames))
	for i, f := range frames {
		msgs[i] = recorder.Message{Kind: f.Kind, Channel: x.ch, Payload: f.Payload}
	}
	return sess.ClientBatch(ctx, msgs)
}

// wsMessage records one WebSocket message and returns what to forward: the
// message itself, or, for a byte stream carried in messages (SPDY tunnelled
// through a WebSocket), the complete units so far, the rest kept in pending.
func (x *exchange) wsMessage(ctx context.Context, fr StreamFraming, dir schemas.Direction, typ websocket.MessageType, data []byte, pending *[]byte) ([]byte, error) {
	whole := func() []Frame {
		kind := hs.KindWSText
		if typ == websocket.MessageBinary {
			kind = hs.KindWSBinary
		}
		return []Frame{{Kind: kind, Payload: data}}
	}
	switch {
	case fr == nil || typ != websocket.MessageBinary:
		return data, x.record(ctx, dir, whole())
	case !fr.Splits():
		frames := fr.Message(dir, data)
		if frames == nil {
			frames = whole()
		}
		return data, x.record(ctx, dir, frames)
	}
	buf := append(*pending, data...)
	n, frames, err := fr.Split(dir, buf)
	if err != nil {
		return nil, badStream{err}
	}
	if err := x.record(ctx, dir, frames); err != nil {
		return nil, err
	}
	*pending = append([]byte(nil), buf[n:]...)
	return buf[:n], nil
}

// badStream is traffic the dialect cannot read: the connection ends, the
// session goes on.
type badStream struct{ error }

// wsRefusalBody is what the WebSocket library keeps of a refusal's body.
const wsRefusalBody = 1024

// relayRefusal relays the target's refusal of a WebSocket upgrade (an RBAC
// denial from the Kubernetes API, say) as the agent's answer, when the
// library kept all of its body; clients print the target's own reason.
func (x *exchange) relayRefusal(w http.ResponseWriter, resp *http.Response) bool {
	if resp.Body == nil {
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	if len(body) >= wsRefusalBody || (resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength) {
		return false // cut short: answer in the gateway's words instead
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.Header.Del("Content-Length")
	resp.ContentLength = int64(len(body))
	x.relayResponse(w, http.NewResponseController(w), resp)
	return true
}

// wsCutter returns the context the WebSocket's pumps run in and what tells
// the agent, in the dialect's words, why the gateway ends its stream. When
// the session stops, the agent is told before the pumps are stopped:
// cancelling a read closes the connection, and with it the chance to say why.
func (x *exchange) wsCutter(ctx context.Context, fr StreamFraming, agent *websocket.Conn) (context.Context, func(string), func()) {
	if fr == nil {
		return ctx, func(string) {}, func() {}
	}
	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var once sync.Once
	cut := func(reason string) {
		once.Do(func() {
			b := fr.Cut(reason)
			if b == nil {
				return
			}
			wctx, done := context.WithTimeout(pctx, cutWriteTimeout)
			defer done()
			if agent.Write(wctx, websocket.MessageBinary, b) == nil {
				// A normal close: clients read what a stream carried only then.
				_ = agent.Close(websocket.StatusNormalClosure, "")
			}
		})
	}
	stop := context.AfterFunc(ctx, func() {
		cut(errString(context.Cause(ctx)))
		cancel(context.Cause(ctx))
	})
	return pctx, cut, func() { stop(); cancel(nil) }
}
