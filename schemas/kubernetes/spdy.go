package kubernetes

import (
	"fmt"
	"io"
	"sync"

	"github.com/moby/spdystream/spdy"
)

// SPDY decodes both directions of one SPDY/3.1 exec, attach or port-forward
// connection into channel messages. The client opens every stream and names it
// (streamType header); the server's data on a stream is read under that name, so
// the two directions share the stream table.
//
// Framing uses moby/spdystream's framer, the one client-go and the kubelet use:
// header blocks are zlib streams with a shared dictionary, and matching the peers'
// own parser is worth more than a hand-written one.
type SPDY struct {
	PortForward bool

	mu    sync.Mutex
	types map[spdy.StreamId]string
}

// SPDYReader reads the frames of one direction.
type SPDYReader struct {
	s  *SPDY
	fr *spdy.Framer
}

// Reader returns the decoder of one direction's bytes.
func (s *SPDY) Reader(r io.Reader) (*SPDYReader, error) {
	// Bound header blocks; the peers' headers are a handful of short fields.
	fr, err := spdy.NewFramerWithOptions(io.Discard, r, spdy.WithMaxHeaderCount(64), spdy.WithMaxHeaderFieldSize(8<<10), spdy.WithMaxControlFramePayloadSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("kubernetes: spdy framer: %w", err)
	}
	return &SPDYReader{s: s, fr: fr}, nil
}

// Next returns the next data message with a known stream type, skipping control
// frames (after noting stream names) and data on unnamed streams. It returns
// io.EOF at the end of the stream.
func (r *SPDYReader) Next() (Message, error) {
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return Message{}, err
		}
		switch f := f.(type) {
		case *spdy.SynStreamFrame:
			r.s.name(f.StreamId, f.Headers.Get("streamType"))
		case *spdy.DataFrame:
			k, ok := KindOfStreamType(r.s.typeOf(f.StreamId), r.s.PortForward)
			if !ok || len(f.Data) == 0 {
				continue
			}
			return Message{Kind: k, Channel: byte(f.StreamId), Data: f.Data}, nil
		}
	}
}

func (s *SPDY) name(id spdy.StreamId, t string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.types == nil {
		s.types = map[spdy.StreamId]string{}
	}
	s.types[id] = t
}

func (s *SPDY) typeOf(id spdy.StreamId) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.types[id]
}
