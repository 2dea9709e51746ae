package httpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/ingest/recorder"
	hs "github.com/tapline/tapline/schemas/http"
)

// exchange is one request through the proxy.
type exchange struct {
	s    *Server
	ls   *liveSession
	up   *upstream
	ch   int64
	path string        // the path to forward, routing prefix removed
	id   auth.Identity // the agent, for Options.Outbound
}

// refused is an error of Options.Outbound: the edge refuses the request as
// forbidden, not as malformed.
type refused struct{ error }

func statusOfOutbound(err error) int {
	if errors.As(err, new(refused)) {
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// hopHeaders are connection-level headers that are not forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// outbound builds the request for the target: the agent's request with its
// token and hop-by-hop headers removed. Credentials are added after recording,
// so the target's secrets are never in a frame.
func (x *exchange) outbound(ctx context.Context, r *http.Request, body io.Reader) (*http.Request, error) {
	target := x.up.basePath + x.path
	if target == "" {
		target = "/"
	}
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, x.up.scheme+"://"+x.up.address+target, body)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	removeHop(out.Header)
	if teTrailers(r.Header) {
		out.Header.Set("Te", "trailers")
	}
	out.Header.Del("Authorization")
	out.Host = x.up.host
	out.ContentLength = r.ContentLength
	if body == nil || r.ContentLength == 0 {
		out.ContentLength, out.Body = 0, nil
	}
	out.Trailer = r.Trailer
	if x.s.outbound != nil {
		if err := x.s.outbound(x.up.name, out, x.id); err != nil {
			return nil, refused{err}
		}
	}
	return out, nil
}

func teTrailers(h http.Header) bool {
	for _, v := range h.Values("Te") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "trailers") {
				return true
			}
		}
	}
	return false
}

func fields(h http.Header, extra ...hs.Field) []hs.Field {
	out := make([]hs.Field, 0, len(h)+len(extra))
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, hs.Field{Name: k, Value: v})
		}
	}
	sortFields(out)
	return append(out, extra...)
}

func sortFields(fs []hs.Field) {
	// Map order is random; a stable order makes heads comparable.
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].Name < fs[j-1].Name; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

func (x *exchange) requestHead(r *http.Request, out *http.Request) *hs.Head {
	return &hs.Head{Method: r.Method, Target: out.URL.RequestURI(), Host: out.Host, Path: r.URL.RequestURI(),
		Scheme: x.up.scheme, Proto: r.Proto, Headers: fields(out.Header)}
}

// forward relays a plain request and its response.
func (x *exchange) forward(w http.ResponseWriter, r *http.Request) {
	ctx, stop := x.context(r.Context())
	defer stop()
	rc := http.NewResponseController(w)
	sess := x.ls.sess
	whole := r.ContentLength > 0 && r.ContentLength <= int64(x.s.cfg.WholeBodyBytes)
	var body *bodyReader
	var payload []byte
	if whole {
		var err error
		if payload, err = x.readWhole(r, rc); err != nil {
			x.clientGone(w, r, err)
			return
		}
	} else if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = newBodyReader(ctx, x, r, rc)
	}
	var outBody io.Reader
	switch {
	case whole:
		outBody = bytes.NewReader(payload)
	case body != nil:
		outBody = body
	}
	out, err := x.outbound(ctx, r, outBody)
	if err != nil {
		x.s.m.requests.WithLabelValues("client_error").Inc()
		x.s.refuse(w, x.up.name, statusOfOutbound(err), "tapline: "+err.Error())
		return
	}
	if body != nil {
		out.ContentLength = r.ContentLength
	}
	msgs := x.requestMessages(r, out, body != nil, whole, payload)
	if err := sess.ClientBatch(ctx, msgs); err != nil {
		x.recordingFailed(w, err)
		return
	}
	if err := x.up.auth(out.Header); err != nil {
		x.s.log.Error("target credentials unreadable", "target", x.up.name, "err", err)
		x.gatewayAnswer(w, http.StatusBadGateway, "credentials_unavailable", "tapline: the gateway cannot read its credentials for target "+x.up.name+"; tell the gateway operator")
		x.endRequest(body, "not forwarded")
		return
	}
	resp, err := x.up.transport.RoundTrip(out)
	if err != nil {
		x.upstreamFailed(w, body, err)
		return
	}
	defer resp.Body.Close()
	x.relayResponse(w, rc, resp)
	x.endRequest(body, "not read by the target")
}

// requestMessages is what is recorded before the request goes upstream: one
// complete frame when its body is already read (or empty) and all fits one
// frame; else the head, and the whole body and end when they are read.
func (x *exchange) requestMessages(r, out *http.Request, streamed, whole bool, payload []byte) []recorder.Message {
	head := hs.EncodeHead(x.requestHead(r, out))
	if streamed {
		return []recorder.Message{{Kind: hs.KindRequest, Channel: x.ch, Payload: head}}
	}
	end := hs.EncodeEnd(&hs.End{Bytes: int64(len(payload)), Trailers: fields(r.Trailer)})
	if x.completes(len(head) + len(end) + len(payload)) {
		return []recorder.Message{{Kind: hs.KindRequestComplete, Channel: x.ch, Payload: hs.JoinComplete(head, end, payload)}}
	}
	msgs := []recorder.Message{{Kind: hs.KindRequest, Channel: x.ch, Payload: head}}
	if whole {
		msgs = append(msgs, recorder.Message{Kind: hs.KindRequestBody, Channel: x.ch, Payload: payload})
	}
	return append(msgs, recorder.Message{Kind: hs.KindRequestEnd, Channel: x.ch, Payload: end})
}

// completes reports whether a complete frame of n payload bytes is recorded:
// the payload fits one frame, so masking sees it whole (the Kubernetes API's
// Secret masking parses a complete frame's body as it does a body frame, and
// withholds a complete frame in fragments).
func (x *exchange) completes(n int) bool {
	if f, ok := x.ls.sess.(interface{ FragmentBytes() int }); ok {
		return n+2 <= f.FragmentBytes() // the two line feeds
	}
	return true
}

// context is the request's context, also cancelled when the session stops.
func (x *exchange) context(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.AfterFunc(x.ls.ctx, func() { cancel(context.Cause(x.ls.ctx)) })
	return ctx, func() { stop(); cancel(nil) }
}

// readWhole reads a body of known, small length, each read bounded by the
// body idle timeout.
func (x *exchange) readWhole(r *http.Request, rc *http.ResponseController) ([]byte, error) {
	buf := make([]byte, r.ContentLength)
	n := 0
	for n < len(buf) {
		_ = rc.SetReadDeadline(time.Now().Add(x.s.cfg.BodyIdleTimeout))
		m, err := r.Body.Read(buf[n:])
		n += m
		if err == io.EOF && n == len(buf) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	x.s.m.clientBytes.Add(float64(n))
	return buf, nil
}

// clientGone answers a request whose body could not be read.
func (x *exchange) clientGone(w http.ResponseWriter, r *http.Request, err error) {
	x.s.m.requests.WithLabelValues("client_error").Inc()
	status, reason := http.StatusBadRequest, "bad_request_body"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status, reason = http.StatusRequestTimeout, "body_timeout"
	}
	w.Header().Set("Connection", "close")
	plain(w, status, fmt.Sprintf("tapline: request body not received (%s): %v", reason, err))
}

func (x *exchange) recordingFailed(w http.ResponseWriter, err error) {
	x.s.m.requests.WithLabelValues("refused").Inc()
	x.ls.log.Error("request not forwarded: recording failed", "err", err)
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "5")
	x.s.refuse(w, x.up.name, http.StatusServiceUnavailable, msgRecordingUnavailable)
	x.ls.stop("recording failed: " + err.Error())
}

// endRequest records the request's end if the body reader did not (the
// target answered without reading it all).
func (x *exchange) endRequest(b *bodyReader, why string) {
	if b != nil {
		b.finish(why)
	}
}

// upstreamFailed answers a round trip that failed: the target unreachable,
// its TLS refused, it timed out, or the agent's body broke.
func (x *exchange) upstreamFailed(w http.ResponseWriter, body *bodyReader, err error) {
	if body != nil {
		if berr := body.failure(); berr != nil {
			if errors.Is(berr, recorder.ErrUnavailable) || errors.Is(berr, errStoppedBody) {
				x.recordingFailed(w, berr)
				return
			}
			body.finish(berr.Error())
			x.gatewayAnswer(w, statusForClient(berr), "client_body", "tapline: request body not received: "+berr.Error())
			return
		}
		defer body.finish("not read by the target")
	}
	if cause := context.Cause(x.ls.ctx); cause != nil {
		x.gatewayAnswer(w, http.StatusServiceUnavailable, "session_ended", "tapline: "+cause.Error())
		return
	}
	x.s.m.requests.WithLabelValues("upstream_error").Inc()
	reason, msg := classify(err)
	status := http.StatusBadGateway
	if reason == "upstream_timeout" {
		status = http.StatusGatewayTimeout
	}
	x.ls.log.Warn("target request failed", "reason", reason, "err", err)
	x.gatewayAnswer(w, status, reason, fmt.Sprintf("tapline: target %s: %s: %v", x.up.name, msg, err))
}

func statusForClient(err error) int {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// classify says why a round trip failed, in words an operator can act on.
func classify(err error) (reason, msg string) {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn):
		return "upstream_tls", "its TLS certificate is not trusted (set ca_file for a private CA, or server_name)"
	case strings.Contains(err.Error(), "tls:"):
		return "upstream_tls", "TLS handshake failed"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "upstream_timeout", "no answer in time"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "upstream_unreachable", "cannot connect"
	}
	return "upstream_error", "request failed"
}

// gatewayAnswer answers in the target's place and records the answer.
func (x *exchange) gatewayAnswer(w http.ResponseWriter, status int, reason, msg string) {
	status, ctype, body := x.s.answerBody(x.up.name, status, msg)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Tapline-Error", reason)
	head := &hs.Head{Status: status, Proto: "HTTP/1.1", Headers: fields(h), Gateway: reason}
	x.recordResponse(hs.EncodeHead(head), hs.EncodeEnd(&hs.End{Bytes: int64(len(body))}), body)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// abort cuts the exchange when its frames cannot be recorded.
func (x *exchange) abort(err error) {
	x.ls.log.Error("exchange cut: recording failed", "err", err)
	x.ls.stop("recording failed: " + err.Error())
	panic(http.ErrAbortHandler)
}

var bufs = sync.Pool{New: func() any { return new([]byte) }}

func bufPool(n int) []byte {
	p := bufs.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	return (*p)[:n]
}

func putBuf(b []byte) {
	if cap(b) > 4<<20 {
		return
	}
	bufs.Put(&b)
}
