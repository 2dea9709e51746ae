package postgres

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
)

// Startup-phase packets have no type byte: int32 length (counting itself), int32 code.
const (
	maxStartupPacket = 10000 // as PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	codeSSLRequest   = 80877103
	codeGSSENC       = 80877104
	codeCancel       = 80877102
	protocol30       = 3 << 16
	cancelPacketLen  = 16
)

// startup is what the agent asked for in its StartupMessage.
type startup struct {
	raw    []byte // the StartupMessage exactly as received, recorded as the first CLIENT frame
	params map[string]string
	minor  uint32   // requested protocol minor version
	pqOpts []string // _pq_.* protocol options the gateway does not support
}

// readPacket reads one startup-phase packet. It reads exactly the announced bytes, so
// nothing sent after an SSLRequest is consumed before the TLS handshake.
func readPacket(r io.Reader) ([]byte, uint32, error) {
	var hdr [8]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) && n == 0 {
			return nil, 0, io.EOF
		}
		return nil, 0, truncated(err, "startup packet")
	}
	n := int32(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 || n > maxStartupPacket {
		return nil, 0, protocolErrorf("invalid startup packet length %d", n)
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[8:]); err != nil {
		return nil, 0, truncated(err, "startup packet")
	}
	return pkt, binary.BigEndian.Uint32(hdr[4:]), nil
}

// parseStartup decodes a protocol 3.x StartupMessage.
func parseStartup(pkt []byte, code uint32) (*startup, error) {
	st := &startup{raw: pkt, params: map[string]string{}, minor: code & 0xffff}
	rest := pkt[8:]
	for {
		key, after, ok := cstring(rest)
		if !ok {
			return nil, protocolErrorf("startup packet parameters not terminated")
		}
		if key == "" {
			if len(after) != 0 {
				return nil, protocolErrorf("startup packet has %d bytes after its terminator", len(after))
			}
			break
		}
		val, after, ok := cstring(after)
		if !ok {
			return nil, protocolErrorf("startup parameter %q has no value", key)
		}
		if strings.HasPrefix(key, "_pq_.") {
			st.pqOpts = append(st.pqOpts, key)
		} else {
			st.params[key] = val
		}
		rest = after
	}
	sort.Strings(st.pqOpts)
	return st, nil
}

func cstring(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// negotiateProtocolVersion tells a client asking for 3.x (x>0) or _pq_ options that
// the gateway speaks 3.0 without them; libpq then continues with 3.0.
func negotiateProtocolVersion(opts []string) []byte {
	b := []byte{'v', 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, protocol30)
	b = binary.BigEndian.AppendUint32(b, uint32(len(opts)))
	for _, o := range opts {
		b = append(append(b, o...), 0)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// handshake is the result of the startup phase: a StartupMessage over conn, or a
// CancelRequest to serve.
type handshake struct {
	conn    net.Conn // TLS-wrapped if the agent negotiated TLS
	tls     bool
	startup *startup
	cancel  *cancelKey
}

// negotiate runs the startup phase: SSLRequest (answered 'S' and a TLS handshake, or
// 'N' without a certificate), GSSENCRequest (always 'N'), then a StartupMessage or
// CancelRequest. Errors the agent should see are *ProtocolError or *clientError; the
// returned handshake is never nil, so they go over the negotiated (TLS) connection.
func (s *Server) negotiate(raw net.Conn) (*handshake, error) {
	h := &handshake{conn: raw}
	if err := s.directTLS(h); err != nil {
		return h, err
	}
	for {
		pkt, code, err := readPacket(h.conn)
		if err != nil {
			return h, err
		}
		switch code {
		case codeSSLRequest:
			if err := s.startTLS(h); err != nil {
				return h, err
			}
		case codeGSSENC:
			if h.tls {
				return h, protocolErrorf("GSSENCRequest after TLS was established")
			}
			if _, err := h.conn.Write([]byte{'N'}); err != nil {
				return h, err
			}
		case codeCancel:
			if len(pkt) != cancelPacketLen {
				return h, protocolErrorf("CancelRequest of %d bytes, want %d", len(pkt), cancelPacketLen)
			}
			h.cancel = &cancelKey{pid: binary.BigEndian.Uint32(pkt[8:]), secret: binary.BigEndian.Uint32(pkt[12:])}
			return h, nil
		default:
			if code>>16 != 3 {
				return h, &clientError{code: codeFeatureNotSupported,
					msg: fmt.Sprintf("unsupported frontend protocol %d.%d: the gateway supports 3.0", code>>16, code&0xffff)}
			}
			st, err := parseStartup(pkt, code)
			if err != nil {
				return h, err
			}
			h.startup = st
			return h, nil
		}
	}
}

// alpnPostgres is the ALPN protocol PostgreSQL 17 clients require for direct TLS.
const alpnPostgres = "postgresql"

// directTLS handles sslnegotiation=direct (PostgreSQL 17 clients): the connection
// starts with a TLS ClientHello (0x16, never the first byte of a startup packet
// the gateway accepts) instead of an SSLRequest. Such clients must offer ALPN
// "postgresql", as PostgreSQL requires.
func (s *Server) directTLS(h *handshake) error {
	var first [1]byte
	if _, err := io.ReadFull(h.conn, first[:]); err != nil {
		return err
	}
	h.conn = &prefixConn{Conn: h.conn, prefix: first[:]}
	if first[0] != 0x16 {
		return nil
	}
	if s.cfg.TLS == nil {
		return errors.New("direct TLS connection but the listener has no certificate")
	}
	tc := tls.Server(h.conn, s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	h.conn, h.tls = tc, true
	if tc.ConnectionState().NegotiatedProtocol != alpnPostgres {
		return protocolErrorf("direct TLS connection without ALPN %q", alpnPostgres)
	}
	return nil
}

// prefixConn replays bytes already read before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (s *Server) startTLS(h *handshake) error {
	if h.tls {
		return protocolErrorf("SSLRequest after TLS was established")
	}
	if s.cfg.TLS == nil {
		_, err := h.conn.Write([]byte{'N'})
		return err
	}
	if _, err := h.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(h.conn, s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	h.conn, h.tls = tc, true
	return nil
}

// clientError is an error to show the agent as a FATAL ErrorResponse.
type clientError struct {
	code, msg string
}

func (e *clientError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }
