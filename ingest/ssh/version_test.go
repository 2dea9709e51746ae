package sshproxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestOffersAESGCM(t *testing.T) {
	for v, want := range map[string]bool{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10": true,
		"SSH-2.0-OpenSSH_6.2":                     true,
		"SSH-2.0-OpenSSH_10.0":                    true,
		"SSH-2.0-OpenSSH_for_Windows_8.1":         true,
		"SSH-2.0-OpenSSH_6.1p1":                   false,
		"SSH-2.0-OpenSSH_5.3":                     false,
		"SSH-2.0-paramiko_3.4.0":                  false,
		"SSH-2.0-Go":                              false,
		"SSH-1.99-OpenSSH_9.0":                    false,
		"":                                        false,
	} {
		if got := offersAESGCM(v); got != want {
			t.Errorf("offersAESGCM(%q) = %v", v, got)
		}
	}
}

// readClientVersion must hand the SSH library every byte it read, whatever
// arrived: a whole line with the next packet behind it, nothing yet, or a line
// too long to be one.
func TestReadClientVersionReplays(t *testing.T) {
	for name, tc := range map[string]struct {
		sent    string
		version string
	}{
		"line and more": {"SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01\x0ckexinit...", "SSH-2.0-OpenSSH_9.2"},
		"bare LF":       {"SSH-2.0-client\nrest", "SSH-2.0-client"},
		"nothing":       {"", ""},
		"no end":        {"SSH-2.0-" + strings.Repeat("x", 300), ""},
	} {
		t.Run(name, func(t *testing.T) {
			agent, gw := net.Pipe()
			defer agent.Close()
			go func() {
				agent.Write([]byte(tc.sent))
				agent.Close()
			}()
			start := time.Now()
			conn, version := readClientVersion(gw, time.Now().Add(5*time.Second))
			if version != tc.version {
				t.Errorf("version %q, want %q", version, tc.version)
			}
			if time.Since(start) > 2*versionWait+time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			got, _ := io.ReadAll(conn)
			if !bytes.Equal(got, []byte(tc.sent)) {
				t.Errorf("replayed %q, sent %q", got, tc.sent)
			}
		})
	}
}

// A client that waits for the server's line first is not held longer than
// versionWait, and what it sends afterwards still arrives.
func TestReadClientVersionDoesNotWaitLong(t *testing.T) {
	agent, gw := net.Pipe()
	defer agent.Close()
	start := time.Now()
	conn, version := readClientVersion(gw, time.Now().Add(time.Minute))
	if version != "" || time.Since(start) > versionWait+time.Second {
		t.Fatalf("version %q after %s", version, time.Since(start))
	}
	go agent.Write([]byte("SSH-2.0-late\r\n"))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "SSH-2.0-late\r\n" {
		t.Fatalf("read after the wait: %q %v", buf[:n], err)
	}
}

// FuzzReadClientVersion: whatever an agent sends first, every byte reaches the
// SSH library unchanged, and a version is only ever a whole first line.
func FuzzReadClientVersion(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x05\xdc\x06\x14"))
	f.Add([]byte("SSH-2.0-paramiko_3.4.0\r\n"))
	f.Add([]byte("\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, sent []byte) {
		agent, gw := net.Pipe()
		defer agent.Close()
		go func() {
			agent.Write(sent)
			agent.Close()
		}()
		conn, version := readClientVersion(gw, time.Now().Add(5*time.Second))
		got, _ := io.ReadAll(conn)
		if !bytes.Equal(got, sent) {
			t.Fatalf("replayed %q, sent %q", got, sent)
		}
		if version != "" && !bytes.HasPrefix(sent, []byte(version)) || strings.ContainsAny(version, "\n") {
			t.Fatalf("version %q from %q", version, sent)
		}
		offersAESGCM(version)
	})
}
