package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"io"
	"slices"
)

// headerLen is the type byte plus the int32 length of every regular message.
const headerLen = 5

// growStep bounds each allocation while reading a body, so a peer that announces a
// huge length and then stalls costs what it sent, not what it announced.
const growStep = 256 << 10

// keepBuffer is the largest body buffer kept between messages; bigger ones are
// dropped after use so an idle connection does not pin a one-off large message.
const keepBuffer = 1 << 20

// ProtocolError is a violation of the wire framing by the peer. The proxy answers
// it with SQLSTATE 08P01 (protocol_violation) and closes the connection.
type ProtocolError struct {
	Reason    string
	Oversized bool // the message exceeded the size limit (not a violation when the target sends it)
}

func (e *ProtocolError) Error() string { return "protocol violation: " + e.Reason }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// msgReader reads regular (typed) protocol messages off a stream without decoding
// them. The returned slice holds the whole message (type byte, length, body) and is
// valid until the next call.
type msgReader struct {
	r     *bufio.Reader
	max   int           // largest accepted message, header included
	kinds map[byte]bool // type bytes this peer may send
	buf   []byte
}

func newMsgReader(r *bufio.Reader, max int, kinds map[byte]bool) *msgReader {
	return &msgReader{r: r, max: max, kinds: kinds}
}

// next returns the next message. io.EOF means the peer closed cleanly between
// messages; a close inside a message is a *ProtocolError (truncated message).
func (m *msgReader) next() (byte, []byte, error) {
	if cap(m.buf) > keepBuffer {
		m.buf = nil
	}
	var hdr [headerLen]byte
	if n, err := io.ReadFull(m.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) && n == 0 {
			return 0, nil, io.EOF
		}
		return 0, nil, truncated(err, "message header")
	}
	typ := hdr[0]
	if !m.kinds[typ] {
		return 0, nil, protocolErrorf("unexpected message type %q (0x%02x)", printable(typ), typ)
	}
	// The length counts itself but not the type byte.
	n := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 {
		return 0, nil, protocolErrorf("invalid length %d in %q message", n, printable(typ))
	}
	if n+1 > int64(m.max) {
		return 0, nil, &ProtocolError{Oversized: true,
			Reason: fmt.Sprintf("%q message of %d bytes exceeds the limit of %d bytes", printable(typ), n+1, m.max)}
	}
	total := int(n) + 1
	m.buf = append(m.buf[:0], hdr[:]...)
	for len(m.buf) < total {
		want := min(total-len(m.buf), growStep)
		m.buf = slices.Grow(m.buf, want)
		got, err := io.ReadFull(m.r, m.buf[len(m.buf):len(m.buf)+want])
		m.buf = m.buf[:len(m.buf)+got]
		if err != nil {
			return 0, nil, truncated(err, fmt.Sprintf("%q message (%d of %d bytes)", printable(typ), len(m.buf), total))
		}
	}
	return typ, m.buf, nil
}

// completeBuffered reports whether a whole message is already buffered, so a
// writer can hold its flush until the peer's batch (pipeline) has been read.
func (m *msgReader) completeBuffered() bool {
	if m.r.Buffered() < headerLen {
		return false
	}
	hdr, err := m.r.Peek(headerLen)
	if err != nil {
		return false
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	return n >= 4 && m.r.Buffered() >= n+1
}

// appendBuffered appends the next message to dst when it is already complete in
// the read buffer, of a known type, and at most limit bytes long; it never reads
// from the connection. Otherwise it consumes nothing and returns ok false,
// leaving the message (or the violation) to next.
func (m *msgReader) appendBuffered(dst []byte, limit int) (out []byte, ok bool) {
	if !m.completeBuffered() {
		return dst, false
	}
	hdr, _ := m.r.Peek(headerLen)
	total := int(int32(binary.BigEndian.Uint32(hdr[1:]))) + 1
	if !m.kinds[hdr[0]] || total > m.max || total > limit {
		return dst, false
	}
	msg, _ := m.r.Peek(total) // buffered: cannot fail
	dst = append(dst, msg...)
	_, _ = m.r.Discard(total)
	return dst, true
}

func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return protocolErrorf("truncated %s: connection closed mid-message", what)
	}
	return err
}

func printable(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return string(rune(b))
	}
	return fmt.Sprintf("\\x%02x", b)
}

var (
	clientTypes = typeSet(pgwire.ClientKinds)
	serverTypes = typeSet(pgwire.ServerKinds)
)

func typeSet(m map[byte]string) map[byte]bool {
	s := make(map[byte]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}

// serverKind names a backend message the way pgproto3 names its type.
func serverKind(typ byte, msg []byte) string {
	if typ != 'R' {
		return pgwire.ServerKinds[typ]
	}
	if len(msg) >= headerLen+4 {
		if k, ok := pgwire.AuthKinds[binary.BigEndian.Uint32(msg[headerLen:])]; ok {
			return k
		}
	}
	return "Authentication"
}
