package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// isWebSocket reports a WebSocket upgrade request (RFC 6455 4.1).
func isWebSocket(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		hasToken(r.Header.Values("Connection"), "upgrade")
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), token) {
				return true
			}
		}
	}
	return false
}

// wsHeaders are set by the WebSocket library on each side; the agent's values
// are not forwarded.
var wsHeaders = []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol"}

// websocket relays a WebSocket: the upgrade is recorded as an exchange, then
// each message as one frame in its direction, and the close frames with their
// codes. Each side's upgrade is done by the library (github.com/coder/websocket),
// so messages are whole and control frames are answered at each hop.
// Per-message compression is not negotiated, so recorded messages are plain.
func (x *exchange) websocket(w http.ResponseWriter, r *http.Request) {
	ctx, stop := x.context(r.Context())
	defer stop()
	if r.ProtoMajor == 1 {
		// The connection is the WebSocket's: once it is over, so is the connection.
		defer func() {
			if c := connOf(r.Context()); c != nil {
				c.closeAll("connection closed")
			}
		}()
	}
	sess := x.ls.sess
	out, err := x.outbound(ctx, r, nil)
	if err != nil {
		x.s.refuse(w, x.up.name, statusOfOutbound(err), "tapline: "+err.Error())
		return
	}
	for _, h := range wsHeaders {
		out.Header.Del(h)
	}
	msgs := []recorder.Message{
		{Kind: hs.KindRequest, Channel: x.ch, Payload: hs.EncodeHead(x.requestHead(r, out))},
		{Kind: hs.KindRequestEnd, Channel: x.ch, Payload: hs.EncodeEnd(&hs.End{})},
	}
	if err := sess.ClientBatch(ctx, msgs); err != nil {
		x.recordingFailed(w, err)
		return
	}
	if err := x.up.auth(out.Header); err != nil {
		x.gatewayAnswer(w, http.StatusBadGateway, "credentials_unavailable", "tapline: the gateway cannot read its credentials for target "+x.up.name)
		return
	}
	var protos []string
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				protos = append(protos, p)
			}
		}
	}
	up, resp, err := websocket.Dial(ctx, out.URL.String(), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: x.up.h1}, HTTPHeader: out.Header, Host: out.Host,
		Subprotocols: protos, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		x.s.m.requests.WithLabelValues("upstream_error").Inc()
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if x.relayRefusal(w, resp) {
				return
			}
			x.gatewayAnswer(w, http.StatusBadGateway, "upstream_refused_upgrade",
				fmt.Sprintf("tapline: target %s refused the WebSocket upgrade: %s", x.up.name, resp.Status))
			return
		}
		reason, msg := classify(err)
		x.gatewayAnswer(w, http.StatusBadGateway, reason, fmt.Sprintf("tapline: target %s: %s: %v", x.up.name, msg, err))
		return
	}
	defer up.CloseNow()
	head := &hs.Head{Status: http.StatusSwitchingProtocols, Proto: resp.Proto, Headers: fields(resp.Header)}
	if err := sess.Server(hs.KindResponse, x.ch, hs.EncodeHead(head)); err != nil {
		up.Close(websocket.StatusInternalError, "recording failed")
		x.recordingFailed(w, err)
		return
	}
	var accept []string
	if p := up.Subprotocol(); p != "" {
		accept = []string{p}
	}
	agent, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// The agent authenticated with its token; origins matter to browsers,
		// and the target still sees the agent's Origin header.
		InsecureSkipVerify: true, Subprotocols: accept, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		up.Close(websocket.StatusGoingAway, "agent upgrade failed")
		_ = sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(&hs.End{Error: "agent upgrade failed: " + err.Error()}))
		return
	}
	defer agent.CloseNow()
	limit := int64(x.s.cfg.MaxWSMessageBytes)
	agent.SetReadLimit(limit)
	up.SetReadLimit(limit)
	n := x.relayMessages(ctx, agent, up, x.wsFraming(up.Subprotocol()))
	_ = sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(&hs.End{Bytes: n}))
}

type pumpResult struct {
	dir  schemas.Direction
	err  error
	to   *websocket.Conn
	rerr error // recording failed
}

// relayMessages pumps messages both ways until both directions are closed
// and returns the bytes relayed from the target.
func (x *exchange) relayMessages(ctx context.Context, agent, up *websocket.Conn, fr StreamFraming) int64 {
	ctx, cut, release := x.wsCutter(ctx, fr, agent)
	defer release()
	var fromUp int64
	res := make(chan pumpResult, 2)
	go func() { res <- x.pump(ctx, agent, up, schemas.Client, nil, fr, cut) }()
	go func() { res <- x.pump(ctx, up, agent, schemas.Server, &fromUp, fr, cut) }()
	for i := range 2 {
		p := <-res
		x.closed(p, i == 0)
	}
	return fromUp
}

func (x *exchange) pump(ctx context.Context, from, to *websocket.Conn, dir schemas.Direction, count *int64, fr StreamFraming, cut func(string)) pumpResult {
	var pending []byte
	var msg bytes.Buffer
	for {
		typ, data, err := readMessage(ctx, from, &msg)
		if err != nil {
			return pumpResult{dir: dir, err: err, to: to}
		}
		if dir == schemas.Server {
			*count += int64(len(data))
		}
		x.s.m.bytes.WithLabelValues(strings.ToLower(string(dir))).Add(float64(len(data)))
		data, rerr := x.wsMessage(ctx, fr, dir, typ, data, &pending)
		if errors.As(rerr, new(badStream)) {
			return pumpResult{dir: dir, err: rerr, to: to}
		}
		if rerr != nil {
			cut("recording failed: " + rerr.Error())
			return pumpResult{dir: dir, rerr: rerr, to: to}
		}
		if len(data) == 0 && fr != nil && fr.Splits() {
			continue // no complete unit yet
		}
		if err := to.Write(ctx, typ, data); err != nil {
			return pumpResult{dir: dir, err: err, to: to}
		}
	}
}

// keptMessageBytes is the largest buffer a pump keeps between messages: a
// rare large message does not hold its size for the rest of the connection.
const keptMessageBytes = 1 << 20

// readMessage reads the next message whole into buf, reusing its memory: the
// library's Read grows a new buffer per message, which for a stream of 32 KiB
// messages (an exec's stdout) was most of the relay's copying. The returned
// bytes are valid until the next call; recording copies them and the write
// to the other side is done by then. The read limit set on from still applies.
func readMessage(ctx context.Context, from *websocket.Conn, buf *bytes.Buffer) (websocket.MessageType, []byte, error) {
	if buf.Cap() > keptMessageBytes {
		*buf = bytes.Buffer{}
	}
	buf.Reset()
	typ, r, err := from.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return 0, nil, err
	}
	return typ, buf.Bytes(), nil
}

// closed records how one direction ended and closes the other side the same way.
func (x *exchange) closed(p pumpResult, first bool) {
	sess := x.ls.sess
	if p.rerr != nil {
		x.ls.log.Error("websocket cut: recording failed", "err", p.rerr)
		p.to.Close(websocket.StatusInternalError, "tapline: recording failed")
		x.ls.stop("recording failed: " + p.rerr.Error())
		return
	}
	code, reason := websocket.CloseStatus(p.err), ""
	var ce websocket.CloseError
	if errors.As(p.err, &ce) {
		reason = ce.Reason
	}
	switch {
	case code == -1 && strings.Contains(errString(p.err), "read limited"):
		code, reason = websocket.StatusMessageTooBig, "tapline: message over max_ws_message_bytes"
	case code == -1 && !first:
		return // the side we closed ourselves
	case code == -1:
		code, reason = websocket.StatusAbnormalClosure, errString(p.err)
	}
	c := &hs.Close{Code: int(code), Reason: reason}
	if p.dir == schemas.Client {
		_ = sess.Client(context.WithoutCancel(x.ls.ctx), hs.KindWSClose, x.ch, hs.EncodeClose(c))
	} else {
		_ = sess.Server(hs.KindWSClose, x.ch, hs.EncodeClose(c))
	}
	switch code {
	case websocket.StatusNoStatusRcvd, websocket.StatusAbnormalClosure, websocket.StatusTLSHandshake:
		code = websocket.StatusGoingAway // not to be sent on the wire (RFC 6455 7.4.1)
	}
	if first {
		go p.to.Close(code, reason)
		return
	}
	// The last side is closed before the relay drops both connections: an
	// agent that reads a stream to its end (an exec's status) needs the close.
	_ = p.to.Close(code, reason)
}
