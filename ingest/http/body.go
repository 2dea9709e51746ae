package httpproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tapline/tapline/ingest/recorder"
	hs "github.com/tapline/tapline/schemas/http"
)

var errStoppedBody = errors.New("session stopped")

// bodyReader records the agent's request body chunk by chunk as the target
// reads it: in strict mode a chunk is handed over only after Kafka
// acknowledged it. A chunk is what one read from the agent returned, or, for
// a body of known length, body_chunk_bytes filled: the target's reader asks
// for 16 KiB or so at a time, and a frame (and in strict mode an
// acknowledgement) per such read would cost far more than the relay.
type bodyReader struct {
	x       *exchange
	ctx     context.Context
	in      io.ReadCloser
	rc      *http.ResponseController
	trailer func() http.Header
	left    int64 // bytes of a known-length body still to read from the agent; -1: unknown

	chunk []byte // recorded, not yet all handed to the target
	off   int
	buf   []byte
	last  error // what ends the body once chunk is handed over: io.EOF or the read error

	mu    sync.Mutex
	n     int64
	ended bool
	err   error
}

func newBodyReader(ctx context.Context, x *exchange, r *http.Request, rc *http.ResponseController) *bodyReader {
	return &bodyReader{x: x, ctx: ctx, in: r.Body, rc: rc, trailer: func() http.Header { return r.Trailer }, left: r.ContentLength}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.off == len(b.chunk) {
		if b.last != nil {
			return 0, b.last
		}
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.chunk[b.off:])
	b.off += n
	if b.off == len(b.chunk) && b.last != nil {
		return n, b.last
	}
	return n, nil
}

// next reads and records the next chunk (and the end, when the body ended).
func (b *bodyReader) next() error {
	if b.buf == nil {
		b.buf = make([]byte, b.x.s.cfg.BodyChunkBytes)
	}
	n, rerr := b.read(b.buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return errStoppedBody
	}
	b.chunk, b.off = b.buf[:n], 0
	var msgs []recorder.Message
	if n > 0 {
		msgs = append(msgs, recorder.Message{Kind: hs.KindRequestBody, Channel: b.x.ch, Payload: b.chunk})
		b.n += int64(n)
		b.x.s.m.clientBytes.Add(float64(n))
	}
	switch {
	case rerr == io.EOF:
		_ = b.rc.SetReadDeadline(time.Time{})
		b.ended = true
		end := &hs.End{Bytes: b.n, Trailers: fields(b.trailer())}
		msgs = append(msgs, recorder.Message{Kind: hs.KindRequestEnd, Channel: b.x.ch, Payload: hs.EncodeEnd(end)})
	case rerr != nil:
		b.err = rerr
	}
	if len(msgs) > 0 {
		if err := b.x.ls.sess.ClientBatch(b.ctx, msgs); err != nil {
			b.err, b.chunk = err, nil
			return err
		}
	}
	b.last = rerr
	if n == 0 && rerr != nil {
		return rerr
	}
	return nil
}

// read reads one chunk from the agent, each read bounded by the body idle
// timeout: what one read gave, or for a body of known length, buf filled or
// the body's rest, whose EOF is read too so that the last chunk and the end
// are recorded together.
func (b *bodyReader) read(buf []byte) (int, error) {
	if b.left < 0 {
		b.deadline()
		return b.in.Read(buf)
	}
	buf = buf[:min(int64(len(buf)), b.left)]
	n := 0
	for n < len(buf) {
		b.deadline()
		m, err := b.in.Read(buf[n:])
		n += m
		b.left -= int64(m)
		if err != nil {
			return n, err
		}
	}
	if b.left > 0 {
		return n, nil
	}
	b.deadline()
	var one [1]byte
	for {
		m, err := b.in.Read(one[:])
		if m > 0 {
			return n, errors.New("agent sent more than its Content-Length")
		}
		if err != nil {
			return n, err
		}
	}
}

func (b *bodyReader) deadline() {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.x.s.cfg.BodyIdleTimeout))
}

func (b *bodyReader) Close() error { return nil } // the server closes the agent's body

// failure is the error that stopped reading, if any.
func (b *bodyReader) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// finish records the request end if the body was not read to its end.
func (b *bodyReader) finish(why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended = true
	_ = b.x.ls.sess.Client(context.WithoutCancel(b.ctx), hs.KindRequestEnd, b.x.ch, hs.EncodeEnd(&hs.End{Bytes: b.n, Error: why}))
}
