package kubernetes

import (
	"bytes"
	"errors"
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
		if m, ok := r.s.message(f); ok {
			return m, nil
		}
	}
}

// message notes a new stream's name, and returns a data frame's message. The
// end of stdin (an empty data frame with FIN) is a close of channel 0, as a
// v5 WebSocket client sends it.
func (s *SPDY) message(f spdy.Frame) (Message, bool) {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		s.name(f.StreamId, f.Headers.Get("streamType"))
	case *spdy.DataFrame:
		t := s.typeOf(f.StreamId)
		if len(f.Data) == 0 && f.Flags&spdy.DataFlagFin != 0 && t == streamStdin {
			return Message{Kind: KindClose, Channel: byte(f.StreamId), Data: []byte{chanStdin}}, true
		}
		k, ok := KindOfStreamType(t, s.PortForward)
		if !ok || len(f.Data) == 0 {
			return Message{}, false
		}
		return Message{Kind: k, Channel: byte(f.StreamId), Data: f.Data}, true
	}
	return Message{}, false
}

// SPDYFrameSize is the size of the SPDY frame at the start of buf, its 8-byte
// header included, or 0 while buf does not hold the header yet. Control and
// data frames both carry a 24-bit length in bytes 5 to 7.
func SPDYFrameSize(buf []byte) int {
	if len(buf) < 8 {
		return 0
	}
	return 8 + (int(buf[5])<<16 | int(buf[6])<<8 | int(buf[7]))
}

// SPDYDecoder decodes one direction of a connection frame by frame, for a
// relay that forwards each frame once its messages are recorded.
type SPDYDecoder struct {
	s  *SPDY
	in bytes.Buffer
	fr *spdy.Framer
}

// Decoder returns the decoder of one direction's frames.
func (s *SPDY) Decoder() (*SPDYDecoder, error) {
	d := &SPDYDecoder{s: s}
	r, err := s.Reader(&d.in)
	if err != nil {
		return nil, err
	}
	d.fr = r.fr
	return d, nil
}

// Decode decodes one complete frame (SPDYFrameSize bytes) into at most one
// message. Frames must come in their order on the wire: header blocks share
// one compression context per direction.
func (d *SPDYDecoder) Decode(frame []byte) (Message, bool, error) {
	d.in.Reset()
	d.in.Write(frame)
	f, err := d.fr.ReadFrame()
	if err != nil {
		return Message{}, false, fmt.Errorf("kubernetes: spdy frame: %w", err)
	}
	if d.in.Len() != 0 {
		return Message{}, false, fmt.Errorf("kubernetes: spdy frame: %d bytes left over", d.in.Len())
	}
	m, ok := d.s.message(f)
	return m, ok, nil
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

// StatusFrame encodes status as the last data of the exec's error stream (a
// data frame with FIN), for a relay that ends the stream itself. It fails
// while the client has not opened the error stream.
func (s *SPDY) StatusFrame(status []byte) ([]byte, error) {
	s.mu.Lock()
	var id spdy.StreamId
	for k, t := range s.types {
		if t == streamError {
			id = k
		}
	}
	s.mu.Unlock()
	if id == 0 {
		return nil, errors.New("kubernetes: no error stream open")
	}
	var b bytes.Buffer
	fr, err := spdy.NewFramer(&b, nil)
	if err != nil {
		return nil, err
	}
	if err := fr.WriteFrame(&spdy.DataFrame{StreamId: id, Flags: spdy.DataFlagFin, Data: status}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
