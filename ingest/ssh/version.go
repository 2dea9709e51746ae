package sshproxy

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"time"
)

// versionWait bounds how long the gateway waits for the agent's identification
// line before the handshake. Clients send it on connect (RFC 4253 4.2 has both
// sides send theirs at once); one that waits for the server's line first gets
// the compatible cipher offer after this delay.
const versionWait = 250 * time.Millisecond

// maxVersionLine is the longest identification line, CR LF included (RFC 4253 4.2).
const maxVersionLine = 255

// readClientVersion reads the agent's identification line ahead of the SSH
// library, which then reads the same bytes again from the returned conn. It
// returns "" when none arrived within versionWait, and the conn's read
// deadline is restored to deadline.
func readClientVersion(nc net.Conn, deadline time.Time) (net.Conn, string) {
	nc.SetReadDeadline(minTime(time.Now().Add(versionWait), deadline))
	defer nc.SetReadDeadline(deadline)
	buf := make([]byte, 0, maxVersionLine+1)
	for len(buf) < maxVersionLine {
		n, err := nc.Read(buf[len(buf):maxVersionLine])
		buf = buf[:len(buf)+n]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return &replayConn{Conn: nc, prefix: buf}, string(bytes.TrimRight(buf[:i], "\r"))
		}
		if err != nil {
			break
		}
	}
	return &replayConn{Conn: nc, prefix: buf}, ""
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replayConn returns prefix before reading on from the connection.
type replayConn struct {
	net.Conn
	prefix []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.prefix) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.prefix)
	c.prefix = c.prefix[n:]
	return n, nil
}

var openSSHVersion = regexp.MustCompile(`^SSH-2\.0-OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)`)

// offersAESGCM reports whether the identification line is that of a client
// known to offer AES-GCM: OpenSSH since 6.2.
func offersAESGCM(version string) bool {
	m := openSSHVersion.FindStringSubmatch(version)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 6 || major == 6 && minor >= 2
}
