package kubernetes

import (
	"net/http"
	"strings"
	"sync/atomic"

	httpproxy "github.com/tapline/tapline/ingest/http"
	"github.com/tapline/tapline/schemas"
	kube "github.com/tapline/tapline/schemas/kubernetes"
)

// spdyTunnel is the WebSocket subprotocol of a port-forward that tunnels
// SPDY/3.1 through a WebSocket (kubectl 1.31 and later).
const spdyTunnel = "SPDY/3.1+" + kube.PortForwardV2

// messages records an exec, attach or port-forward WebSocket per channel.
func messages(subprotocol string) httpproxy.StreamFraming {
	switch subprotocol {
	case kube.ChannelV4, kube.ChannelV5, kube.PortForwardV1, kube.PortForwardV2:
		return &channels{subprotocol: subprotocol}
	case spdyTunnel:
		return newSPDYFraming(true)
	}
	return nil
}

// upgrade records a SPDY/3.1 exec, attach or port-forward per stream.
func upgrade(r *http.Request) httpproxy.StreamFraming {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "SPDY/3.1") {
		return nil
	}
	return newSPDYFraming(strings.HasSuffix(r.URL.Path, "/portforward"))
}

// channels frames WebSocket messages that carry a channel byte.
type channels struct {
	subprotocol string
	ended       atomic.Bool // the server sent the exec's Status
}

func (c *channels) Message(dir schemas.Direction, msg []byte) []httpproxy.Frame {
	m, err := kube.DecodeChannel(c.subprotocol, msg)
	if err != nil {
		return nil // recorded whole
	}
	if dir == schemas.Server && m.Kind == string(kube.KindStatus) {
		c.ended.Store(true)
	}
	return []httpproxy.Frame{{Kind: m.Kind, Payload: m.Data}}
}

func (*channels) Split(_ schemas.Direction, buf []byte) (int, []httpproxy.Frame, error) {
	return len(buf), nil, nil
}

func (*channels) Splits() bool { return false }

// Cut ends an exec's WebSocket with a Failure Status on the error channel
// saying why; port-forward has none, and an exec whose Status the server
// already sent has ended: a second Status is a protocol error to kubectl.
func (c *channels) Cut(reason string) []byte {
	if c.subprotocol != kube.ChannelV4 && c.subprotocol != kube.ChannelV5 || c.ended.Load() {
		return nil
	}
	return append([]byte{kube.ChannelError}, statusBody(http.StatusServiceUnavailable, "tapline: stream cut: "+reason)...)
}

// spdyFraming cuts both directions of a SPDY connection into frames, each
// recorded per stream before it is forwarded.
type spdyFraming struct {
	s                *kube.SPDY
	client, server   *kube.SPDYDecoder
	clientE, serverE error
	ended            atomic.Bool // the server sent the exec's Status
}

func newSPDYFraming(portForward bool) *spdyFraming {
	f := &spdyFraming{s: &kube.SPDY{PortForward: portForward}}
	f.client, f.clientE = f.s.Decoder()
	f.server, f.serverE = f.s.Decoder()
	return f
}

func (f *spdyFraming) Message(schemas.Direction, []byte) []httpproxy.Frame { return nil }

func (f *spdyFraming) Splits() bool { return true }

// Cut ends an exec's error stream with a Failure Status saying why, which
// client-go reports (a SPDY connection that just closes reads as success).
// An exec whose Status the server already sent has ended: the API server
// resetting the connection after it is no cut, and a second Status on the
// error stream is a protocol error to kubectl.
func (f *spdyFraming) Cut(reason string) []byte {
	if f.s.PortForward || f.ended.Load() {
		return nil
	}
	b, err := f.s.StatusFrame(statusBody(http.StatusServiceUnavailable, "tapline: stream cut: "+reason))
	if err != nil {
		return nil
	}
	return b
}

func (f *spdyFraming) Split(dir schemas.Direction, buf []byte) (int, []httpproxy.Frame, error) {
	d, err := f.client, f.clientE
	if dir == schemas.Server {
		d, err = f.server, f.serverE
	}
	if err != nil {
		return 0, nil, err
	}
	var out []httpproxy.Frame
	n := 0
	for {
		size := kube.SPDYFrameSize(buf[n:])
		if size == 0 || len(buf)-n < size {
			return n, out, nil
		}
		m, ok, err := d.Decode(buf[n : n+size])
		if err != nil {
			return n, out, err
		}
		if ok {
			if dir == schemas.Server && m.Kind == string(kube.KindStatus) {
				f.ended.Store(true)
			}
			out = append(out, httpproxy.Frame{Kind: m.Kind, Payload: m.Data})
		}
		n += size
	}
}
