package httpproxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	hs "github.com/tapline/tapline/schemas/http"
)

// maxCompleteBody bounds the response bodies read whole before the agent
// gets the head: small answers, whose head and body travel together anyway.
const maxCompleteBody = 64 << 10

// relayResponse records and writes the target's response as it flows. A
// response of known length up to maxCompleteBody is read whole first and
// recorded as one complete frame; others stream in chunks.
func (x *exchange) relayResponse(w http.ResponseWriter, rc *http.ResponseController, resp *http.Response) {
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	removeHop(h)
	announced := make([]string, 0, len(resp.Trailer))
	for k := range resp.Trailer {
		announced = append(announced, k)
	}
	if len(announced) > 0 {
		h.Set("Trailer", strings.Join(announced, ", "))
		// An h2 target may send a length with trailers; HTTP/1.1 needs chunking for them.
		h.Del("Content-Length")
	}
	head := hs.EncodeHead(&hs.Head{Status: resp.StatusCode, Proto: resp.Proto, Headers: fields(resp.Header)})
	x.s.m.forwarded.Inc()
	stream := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if !stream && resp.ContentLength <= int64(min(maxCompleteBody, x.s.cfg.BodyChunkBytes, x.s.cfg.WholeBodyBytes)) {
		x.relayWhole(w, resp, head)
		return
	}
	if err := x.ls.sess.Server(hs.KindResponse, x.ch, head); err != nil {
		x.abort(err)
	}
	w.WriteHeader(resp.StatusCode)
	if stream {
		_ = rc.Flush() // the head goes out now: an SSE agent waits for it
	}
	n, rerr := x.copyBody(w, rc, resp, stream)
	x.endResponse(w, resp, n, rerr)
}

// relayWhole reads a small body of known length before recording the
// response as one frame; the agent gets the head with the body. A body that
// breaks off is recorded (head, what came, end with the error) and the
// agent's response is cut.
func (x *exchange) relayWhole(w http.ResponseWriter, resp *http.Response, head []byte) {
	buf := bufPool(int(resp.ContentLength))
	defer putBuf(buf)
	n, rerr := readKnown(resp.Body, buf)
	x.s.m.serverBytes.Add(float64(n))
	if rerr != nil {
		if err := x.ls.sess.Server(hs.KindResponse, x.ch, head); err != nil {
			x.abort(err)
		}
		if n > 0 {
			if err := x.ls.sess.Server(hs.KindResponseBody, x.ch, buf[:n]); err != nil {
				x.abort(err)
			}
		}
		w.WriteHeader(resp.StatusCode)
		if n > 0 {
			_, _ = w.Write(buf[:n])
		}
		x.endResponse(w, resp, int64(n), fmt.Errorf("target: %w", rerr))
		return
	}
	end := hs.EncodeEnd(&hs.End{Bytes: int64(n), Trailers: fields(resp.Trailer)})
	if err := x.recordResponse(head, end, buf[:n]); err != nil {
		x.abort(err)
	}
	w.WriteHeader(resp.StatusCode)
	if n > 0 { // a 204's or a HEAD answer's empty body must not be written
		if _, err := w.Write(buf[:n]); err != nil {
			x.ls.log.Warn("response cut", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	setTrailers(w.Header(), resp.Trailer)
}

// recordResponse records a response read whole: one complete frame when the
// target's protocol reads them and it fits one frame, else head, body, end.
func (x *exchange) recordResponse(head, end, body []byte) error {
	sess := x.ls.sess
	if x.completes(len(head) + len(end) + len(body)) {
		return sess.Server(hs.KindResponseComplete, x.ch, hs.JoinComplete(head, end, body))
	}
	if err := sess.Server(hs.KindResponse, x.ch, head); err != nil {
		return err
	}
	if len(body) > 0 {
		if err := sess.Server(hs.KindResponseBody, x.ch, body); err != nil {
			return err
		}
	}
	return sess.Server(hs.KindResponseEnd, x.ch, end)
}

// endResponse records the end of a streamed response and passes its
// trailers on; a body cut short cuts the agent's response too.
func (x *exchange) endResponse(w http.ResponseWriter, resp *http.Response, n int64, rerr error) {
	end := &hs.End{Bytes: n, Trailers: fields(resp.Trailer)}
	setTrailers(w.Header(), resp.Trailer)
	if rerr != nil {
		end.Error = rerr.Error()
	}
	if err := x.ls.sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(end)); err != nil {
		x.abort(err)
	}
	if rerr != nil {
		x.ls.log.Warn("response cut", "err", rerr)
		panic(http.ErrAbortHandler) // the agent must see a broken response, not a short one
	}
}

func setTrailers(h, trailer http.Header) {
	for k, vs := range trailer {
		h[http.TrailerPrefix+k] = vs
	}
}

// readKnown fills buf from a body of len(buf) bytes and reads on to its end
// (so trailers arrive) without taking a byte more. A body that ends at once
// (a HEAD answer's) is empty, not short.
func readKnown(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.EOF:
		return 0, nil
	case err != nil:
		return n, err
	}
	var one [1]byte
	m, err := r.Read(one[:])
	for m == 0 && err == nil {
		m, err = r.Read(one[:])
	}
	if m > 0 {
		return n, errors.New("target sent more than its Content-Length")
	}
	if err == io.EOF {
		return n, nil
	}
	return n, err
}

// copyBody relays a streamed body in chunks, recording each before the
// agent gets it. A body of known length up to whole_body_bytes is one
// message; longer ones go in full chunks (fewer frames per megabyte); a
// body of unknown length goes as it arrives (SSE events, watch chunks).
func (x *exchange) copyBody(w http.ResponseWriter, rc *http.ResponseController, resp *http.Response, stream bool) (int64, error) {
	size := x.s.cfg.BodyChunkBytes
	if resp.ContentLength > 0 && resp.ContentLength <= int64(x.s.cfg.WholeBodyBytes) {
		size = int(resp.ContentLength)
	}
	buf := bufPool(size)
	defer putBuf(buf)
	known := resp.ContentLength >= 0 && !stream
	var total int64
	for {
		var n int
		var err error
		switch {
		case known && total+int64(len(buf)) >= resp.ContentLength:
			n, err = readKnown(resp.Body, buf[:resp.ContentLength-total])
			if err == nil {
				err = io.EOF
			}
		case known:
			n, err = io.ReadFull(resp.Body, buf)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		default:
			n, err = resp.Body.Read(buf)
		}
		if n > 0 {
			if rerr := x.ls.sess.Server(hs.KindResponseBody, x.ch, buf[:n]); rerr != nil {
				x.abort(rerr)
			}
			total += int64(n)
			x.s.m.serverBytes.Add(float64(n))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, fmt.Errorf("agent went away: %w", werr)
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("target: %w", err)
		}
	}
}
