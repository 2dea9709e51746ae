package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// isUpgrade reports an HTTP/1.1 upgrade request other than a WebSocket.
func isUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" && hasToken(r.Header.Values("Connection"), "upgrade")
}

// upgrade relays an upgrade its target's dialect knows (SPDY/3.1 for the
// Kubernetes API): the request and the target's answer are recorded as an
// exchange; after a 101 the connection is relayed both ways, cut into the
// dialect's units, each recorded (the agent's acknowledged in strict mode)
// before it is forwarded. Other upgrades are forwarded as plain requests.
func (x *exchange) upgrade(w http.ResponseWriter, r *http.Request) {
	var fr StreamFraming
	if d := x.s.dialect(x.up.name); d != nil && d.Upgrade != nil {
		fr = d.Upgrade(r)
	}
	if fr == nil {
		x.forward(w, r)
		return
	}
	ctx, stop := x.context(r.Context())
	defer stop()
	// The connection is the stream's: once it is over, so is the connection.
	defer func() {
		if c := connOf(r.Context()); c != nil {
			c.closeAll("connection closed")
		}
	}()
	out, err := x.outbound(ctx, r, nil)
	if err != nil {
		x.s.refuse(w, x.up.name, statusOfOutbound(err), "tapline: "+err.Error())
		return
	}
	token := r.Header.Get("Upgrade")
	out.Header.Set("Connection", "Upgrade")
	out.Header.Set("Upgrade", token)
	msgs := []recorder.Message{
		{Kind: hs.KindRequest, Channel: x.ch, Payload: hs.EncodeHead(x.requestHead(r, out))},
		{Kind: hs.KindRequestEnd, Channel: x.ch, Payload: hs.EncodeEnd(&hs.End{})},
	}
	if err := x.ls.sess.ClientBatch(ctx, msgs); err != nil {
		x.recordingFailed(w, err)
		return
	}
	if err := x.up.auth(out.Header); err != nil {
		x.gatewayAnswer(w, http.StatusBadGateway, "credentials_unavailable", "tapline: the gateway cannot read its credentials for target "+x.up.name)
		return
	}
	resp, err := x.up.h1.RoundTrip(out)
	if err != nil {
		x.upstreamFailed(w, nil, err)
		return
	}
	defer resp.Body.Close()
	upConn, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		// Refused by the cluster (RBAC, no such pod): its answer is the agent's.
		x.relayResponse(w, http.NewResponseController(w), resp)
		return
	}
	x.s.m.requests.WithLabelValues("upgrade").Inc()
	head := &hs.Head{Status: resp.StatusCode, Proto: resp.Proto, Headers: fields(resp.Header)}
	if err := x.ls.sess.Server(hs.KindResponse, x.ch, hs.EncodeHead(head)); err != nil {
		x.recordingFailed(w, err)
		return
	}
	agent, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = x.ls.sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(&hs.End{Error: "agent upgrade failed: " + err.Error()}))
		return
	}
	defer agent.Close()
	_ = agent.SetDeadline(time.Time{})
	if err := writeSwitch(brw.Writer, resp); err != nil {
		_ = x.ls.sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(&hs.End{Error: "agent went away: " + err.Error()}))
		return
	}
	n, why := x.relayUpgraded(ctx, fr, agent, brw.Reader, upConn)
	_ = x.ls.sess.Server(hs.KindResponseEnd, x.ch, hs.EncodeEnd(&hs.End{Bytes: n, Error: why}))
}

// writeSwitch answers the agent's upgrade with the target's 101 and its
// headers (the negotiated X-Stream-Protocol-Version among them).
func writeSwitch(w *bufio.Writer, resp *http.Response) error {
	fmt.Fprintf(w, "HTTP/1.1 101 Switching Protocols\r\n")
	if err := resp.Header.Write(w); err != nil {
		return err
	}
	_, _ = w.WriteString("\r\n")
	return w.Flush()
}

// relayUpgraded relays both ways until either side is done, and returns the
// bytes relayed from the target and, if the relay broke, why.
func (x *exchange) relayUpgraded(ctx context.Context, fr StreamFraming, agent net.Conn, fromAgent io.Reader, up io.ReadWriteCloser) (int64, string) {
	var once sync.Once
	var why string
	toAgent := &lockedWriter{w: agent}
	closeBoth := func(reason string) {
		once.Do(func() {
			why = reason
			if b := fr.Cut(reason); reason != "" && b != nil {
				_ = agent.SetWriteDeadline(time.Now().Add(cutWriteTimeout))
				_, _ = toAgent.Write(b)
			}
			_ = agent.Close()
			_ = up.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() { closeBoth(errString(context.Cause(ctx))) })
	defer stop()
	var fromUp int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := x.relayUnits(ctx, fr, schemas.Client, fromAgent, up)
		closeBoth(x.relayEnd(schemas.Client, err))
	}()
	fromUp, err := x.relayUnits(ctx, fr, schemas.Server, up, toAgent)
	closeBoth(x.relayEnd(schemas.Server, err))
	<-done
	return fromUp, why
}

// relayEnd says why one direction ended: "" for the peer closing it.
func (x *exchange) relayEnd(dir schemas.Direction, err error) string {
	var rerr recordErr
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		return ""
	case errors.As(err, &rerr):
		x.ls.log.Error("stream cut: recording failed", "err", rerr.error)
		x.ls.stop("recording failed: " + rerr.Error())
		return "recording failed: " + rerr.Error()
	}
	return fmt.Sprintf("%s side: %v", dir, err)
}

type recordErr struct{ error }

// maxUnit bounds one unit the dialect waits for (a SPDY frame is at most 16 MiB).
const maxUnit = 16<<20 + 8

// relayUnits copies one direction unit by unit: read, cut, record, forward.
func (x *exchange) relayUnits(ctx context.Context, fr StreamFraming, dir schemas.Direction, from io.Reader, to io.Writer) (int64, error) {
	buf := make([]byte, 0, 64<<10)
	var total int64
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxUnit {
				return total, fmt.Errorf("a unit over %d bytes", maxUnit)
			}
			buf = append(make([]byte, 0, 2*cap(buf)), buf...)
		}
		m, err := from.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if m > 0 {
			x.s.m.bytes.WithLabelValues(lowerDir(dir)).Add(float64(m))
			n, frames, ferr := fr.Split(dir, buf)
			if rerr := x.record(ctx, dir, frames); rerr != nil {
				return total, recordErr{rerr}
			}
			if n > 0 {
				if _, werr := to.Write(buf[:n]); werr != nil {
					return total, werr
				}
				total += int64(n)
				buf = append(buf[:0], buf[n:]...)
			}
			if ferr != nil {
				return total, ferr
			}
		}
		if err != nil {
			return total, err
		}
	}
}

func lowerDir(d schemas.Direction) string {
	if d == schemas.Client {
		return "client"
	}
	return "server"
}

// cutWriteTimeout bounds telling the agent why its stream ends.
const cutWriteTimeout = 5 * time.Second

// lockedWriter writes whole units from two writers (the relay and a cut).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
