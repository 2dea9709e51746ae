package mask

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/protocol"
	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// plantedSecret is a secret the password detector must find wherever it is planted
// on a line of its own.
const plantedSecret = "Hunter2Secret"

var plantedLine = []byte("\npassword=" + plantedSecret + "\n")

// binaryPayloads are payloads of the kinds agents copy: random bytes, bytes that are
// not UTF-8 followed by text the anchored patterns look for (this used to index past
// the payload: lowercasing invalid UTF-8 made the copy longer), an ELF header, and
// text mixed with binary.
func binaryPayloads(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	invalid := bytes.Repeat([]byte{0xff, 0xfe, 0xc3}, 4000)
	elf := append([]byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"), random(4096)...)
	return map[string][]byte{
		"random 64 KiB":           random(64 << 10),
		"random small":            random(37),
		"invalid UTF-8 then text": append(append([]byte(nil), invalid...), "Authorization: BEARER abcdefghijklmnopqrstuvwxyz0123 PASSWORD 'x' IDENTIFIED BY 'y' pwd=z"...),
		"ELF":                     elf,
		"mixed":                   append(append(append(random(1000), invalid[:999]...), plantedLine...), random(1000)...),
		"empty":                   nil,
	}
}

// sshConv is the state of a new SSH session, which masks SSH frames.
func sshConv() protocol.Conversation { return sshproto.Protocol{}.NewConversation() }

// sshFrame builds an SSH frame of kind with payload p.
func sshFrame(kind string, dir schemas.Direction, p []byte) *schemas.Frame {
	return &schemas.Frame{Protocol: schemas.SSH, Kind: kind, Direction: dir, Channel: 1, Payload: append([]byte(nil), p...), Final: true}
}

func TestBinaryPayloadsEveryProtocol(t *testing.T) {
	m := defaultMasker(t)
	for name, p := range binaryPayloads(t) {
		t.Run(name, func(t *testing.T) {
			// SSH: channel data both ways (keystrokes after a password prompt too),
			// exec and env requests, and a kind the masker does not parse.
			conv := sshConv()
			m.Frame(sshFrame("ssh.channel.data", schemas.Server, []byte("Password: ")), "box", conv)
			for _, f := range []*schemas.Frame{
				sshFrame("ssh.channel.data", schemas.Client, p),
				sshFrame("ssh.channel.data", schemas.Server, p),
				sshFrame("ssh.channel.extended-data", schemas.Server, p),
				sshFrame("ssh.unknown", schemas.Client, p),
			} {
				m.Frame(f, "box", conv)
				if len(f.Payload) != len(p) {
					t.Errorf("%s changed length %d → %d", f.Kind, len(p), len(f.Payload))
				}
			}
			for _, kind := range []string{"ssh.request.exec", "ssh.request.env"} {
				f := sshFrame(kind, schemas.Client, p)
				m.Frame(f, "box", conv)
				var v struct{ A, B string }
				if kind == "ssh.request.exec" {
					var c struct{ Command string }
					if ssh.Unmarshal(p, &c) == nil && ssh.Unmarshal(f.Payload, &c) != nil {
						t.Errorf("exec request no longer decodes")
					}
				} else if ssh.Unmarshal(p, &v) == nil && ssh.Unmarshal(f.Payload, &v) != nil {
					t.Errorf("env request no longer decodes")
				}
			}
			// Postgres: the payload as a message body of every masked kind, whole
			// and cut into fragments, and as a raw payload with arbitrary framing.
			for _, kind := range []string{"Query", "Parse", "Bind", "DataRow", "CopyData", "ErrorResponse", "NoticeResponse", "PasswordMessage", "SASLInitialResponse", "SASLResponse"} {
				msg := pgMessage(kind, p)
				f := pgFrame(kind, schemas.Client, append([]byte(nil), msg...))
				m.Frame(f, "db", pgConv{cols: []string{"a", "password"}}.c())
				if _, err := pgwire.CheckedBody(f.Payload); err != nil || f.Payload[0] != msg[0] {
					t.Errorf("%s: framing lost: %v", kind, err)
				}
				raw := pgFrame(kind, schemas.Server, append([]byte(nil), p...))
				m.Frame(raw, "db", pgConv{}.c())
				fconv := pgConv{}.c()
				for i, part := range cut(msg, 3) {
					ff := pgFrame(kind, schemas.Client, append([]byte(nil), part...))
					ff.Fragment, ff.Final = int32(i), i == 2
					m.Frame(ff, "db", fconv)
					if len(ff.Payload) != len(part) {
						t.Errorf("%s fragment %d changed length", kind, i)
					}
				}
			}
			// HTTP: as a body and as a whole message.
			for _, payload := range [][]byte{append([]byte("POST /x HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"), p...), p} {
				f := &schemas.Frame{Protocol: schemas.Kubernetes, Kind: "http.request", Payload: payload, Final: true}
				m.Frame(f, "api", nil)
			}
		})
	}
}

// TestPlantedSecretInBinaryIsMasked checks that a secret among binary bytes is still
// found, at the right place: the masked bytes are exactly the secret's.
func TestPlantedSecretInBinaryIsMasked(t *testing.T) {
	m := defaultMasker(t)
	for name, p := range binaryPayloads(t) {
		payload := append(append(append([]byte(nil), p...), plantedLine...), p...)
		f := sshFrame("ssh.channel.data", schemas.Server, payload)
		m.Frame(f, "box", sshConv())
		if bytes.Contains(f.Payload, []byte(plantedSecret)) {
			t.Errorf("%s: planted secret not masked", name)
		}
		i := len(p) + len("\npassword=")
		if got := string(f.Payload[i : i+len(plantedSecret)]); got != strings.Repeat("*", len(plantedSecret)) {
			t.Errorf("%s: masked bytes at the wrong place: %q", name, got)
		}
	}
}

// pgMessage builds a well-formed message of kind from arbitrary bytes, with the
// planted secret in its text.
func pgMessage(kind string, p []byte) []byte {
	text := strings.ToValidUTF8(strings.ReplaceAll(string(p), "\x00", ""), "?") + string(plantedLine)
	var m interface{ Encode([]byte) ([]byte, error) }
	switch kind {
	case "Query":
		m = &pgproto3.Query{String: text}
	case "Parse":
		m = &pgproto3.Parse{Name: "s", Query: text}
	case "Bind":
		m = &pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1, 0}, Parameters: [][]byte{p, []byte(text)}}
	case "DataRow":
		m = &pgproto3.DataRow{Values: [][]byte{p, []byte(text), nil}}
	case "CopyData":
		m = &pgproto3.CopyData{Data: append(append([]byte(nil), p...), plantedLine...)}
	case "ErrorResponse":
		m = &pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: text}
	case "NoticeResponse":
		m = &pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: text}
	case "PasswordMessage":
		m = &pgproto3.PasswordMessage{Password: text}
	case "SASLInitialResponse":
		m = &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: p}
	default:
		m = &pgproto3.SASLResponse{Data: p}
	}
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// cut splits b into n parts (some may be empty).
func cut(b []byte, n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		out = append(out, b[len(b)*i/n:len(b)*(i+1)/n])
	}
	return out
}

// A payload made of one anchor repeated ("pass=pass=…") used to make every anchor
// rescan the rest of the payload: about two minutes for 64 KiB, half an hour for a 256 KiB frame, which
// stalls the partition past its transaction timeout. Linear, it takes well under a
// second; the bound leaves room for a loaded machine.
func TestRepeatedAnchorsAreLinear(t *testing.T) {
	m := defaultMasker(t)
	for _, unit := range []string{"pass=", "password '", "bearer ", "identified by '"} {
		p := bytes.Repeat([]byte(unit), (64<<10)/len(unit))
		start := time.Now()
		m.Text("x", string(p), Counts{})
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%q × %d: %v", unit, len(p)/len(unit), d)
		}
	}
}

// After a frame could not be masked, the masker assumes the worst about what that
// frame would have told it.
func TestAfterFailureAssumesTheWorst(t *testing.T) {
	m := defaultMasker(t)
	conv := sshConv()
	// The lost frame may have been a password prompt: the next line is masked.
	conv.Withheld(sshFrame("ssh.channel.data", schemas.Server, nil))
	in := sshFrame("ssh.channel.data", schemas.Client, []byte("hunter2\r"))
	m.Frame(in, "box", conv)
	if string(in.Payload) != "*******\r" {
		t.Errorf("line after a lost frame: %q", in.Payload)
	}
	// The lost frame started a fragmented DataRow: the rest is masked whole.
	first := pgFrame("DataRow", schemas.Server, []byte("D\x00\x00\x10\x00\x00\x01"))
	first.Final = false
	pconv := pgConv{}.c()
	pconv.Withheld(first)
	rest := pgFrame("DataRow", schemas.Server, []byte("\x00\x00\x00\x0bsecret-value"))
	rest.Fragment = 1
	m.Frame(rest, "db", pconv)
	if bytes.Contains(rest.Payload, []byte("secret")) || len(rest.Payload) != 16 || rest.Masks[schemas.MaskWithheld] != 1 {
		t.Errorf("fragment after a lost start: %q %v", rest.Payload, rest.Masks)
	}
}
