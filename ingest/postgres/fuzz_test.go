package postgres

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"
)

// FuzzStartupPacket feeds arbitrary bytes to the startup-phase reader and the
// StartupMessage parser: whatever an unauthenticated client sends, they return
// an error or a well-formed result, never panic or read past the packet.
func FuzzStartupPacket(f *testing.F) {
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: protocol30, Parameters: map[string]string{
		"user": "alice", "database": "app", "application_name": "psql", "_pq_.command_trace": "on"}}).Encode(nil)
	f.Add(startup)
	f.Add(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, codeSSLRequest))
	f.Add(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, codeGSSENC))
	f.Add(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 16}, codeCancel), 7))
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 0})
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, code, err := readPacket(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(pkt) < 8 || len(pkt) > maxStartupPacket || len(pkt) > len(b) {
			t.Fatalf("packet of %d bytes from %d input bytes", len(pkt), len(b))
		}
		if code>>16 != 3 {
			return
		}
		st, err := parseStartup(pkt, code)
		if err != nil {
			return
		}
		for k, v := range st.params {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) || strings.HasPrefix(k, "_pq_.") {
				t.Fatalf("parameter %q=%q", k, v)
			}
		}
		_ = negotiateProtocolVersion(st.pqOpts)
	})
}

// FuzzSCRAMServerMessages runs the gateway's SCRAM client against arbitrary
// server-first and server-final messages, as a hostile target would send them:
// errors are fine, panics and a verified signature out of thin air are not.
func FuzzSCRAMServerMessages(f *testing.F) {
	f.Add("r=NONCEsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	f.Add("r=NONCE,s=,i=1", "e=invalid-proof")
	f.Add("r=NONCEx,s=AAAA,i=99999999999999999999", "v=")
	f.Add(",,,=,==", "")
	f.Fuzz(func(t *testing.T, serverFirst, serverFinal string) {
		c := &scramClient{password: "pw", clientNonce: "NONCE", clientFirstBare: "n=,r=NONCE"}
		if strings.Contains(serverFirst, "i=") {
			// Keep iteration counts cheap so the fuzzer explores parsing, not PBKDF2.
			if _, after, _ := strings.Cut(serverFirst, "i="); len(after) > 3 {
				return
			}
		}
		if _, err := c.clientFinal([]byte(serverFirst)); err != nil {
			if c.verifyServerFinal([]byte(serverFinal)) == nil {
				t.Fatal("server signature verified without a completed exchange")
			}
			return
		}
		_ = c.verifyServerFinal([]byte(serverFinal))
	})
}

// FuzzSASLMechanisms parses an AuthenticationSASL body.
func FuzzSASLMechanisms(f *testing.F) {
	f.Add([]byte("SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range saslMechanisms(b) {
			if m == "" || strings.ContainsRune(m, 0) {
				t.Fatalf("mechanism %q", m)
			}
		}
	})
}
