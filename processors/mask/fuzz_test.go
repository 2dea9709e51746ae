package mask

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
)

var fuzzMasker *Masker

func fuzzSetup(f *testing.F) *Masker {
	pgwire.WarmUp() // before any input: the fuzzer takes an input slower than 10 s for a hang
	if fuzzMasker == nil {
		m, err := New(Config{})
		if err != nil {
			f.Fatal(err)
		}
		fuzzMasker = m
	}
	for _, p := range binaryPayloads(f) {
		if len(p) > 4096 {
			p = p[:4096]
		}
		f.Add(p, uint8(0))
	}
	f.Add([]byte("sudo -S\r\npassword=x y@example.com 4111 1111 1111 1111"), uint8(1))
	return fuzzMasker
}

var sshKinds = []string{"ssh.channel.data", "ssh.channel.extended-data", "ssh.request.exec", "ssh.request.env", "ssh.request.exit-status", "ssh.other"}

// FuzzMaskSSH: any payload of any SSH kind masks without panic; channel data keeps its
// length; requests that decoded still decode; a planted secret is masked.
func FuzzMaskSSH(f *testing.F) {
	m := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, p []byte, sel uint8) {
		kind := sshKinds[int(sel)%len(sshKinds)]
		dir := schemas.Client
		if sel&0x80 != 0 {
			dir = schemas.Server
		}
		conv := sshConv()
		if sel&0x40 != 0 {
			m.Frame(sshFrame("ssh.channel.data", schemas.Server, []byte("[sudo] password for bob: ")), "box", conv)
		}
		fr := sshFrame(kind, dir, p)
		m.Frame(fr, "box", conv)
		switch kind {
		case "ssh.channel.data", "ssh.channel.extended-data", "ssh.other":
			if len(fr.Payload) != len(p) {
				t.Fatalf("%s changed length %d → %d", kind, len(p), len(fr.Payload))
			}
		case "ssh.request.exec":
			var c struct{ Command string }
			if ssh.Unmarshal(p, &c) == nil && ssh.Unmarshal(fr.Payload, &c) != nil {
				t.Fatal("exec request no longer decodes")
			}
		}
		planted := sshFrame("ssh.channel.data", dir, append(append([]byte(nil), p...), plantedLine...))
		m.Frame(planted, "box", sshConv())
		// Only the planted line is checked: p may hold the secret's text bare,
		// which no detector can tell from any other word.
		if bytes.Contains(planted.Payload[len(p):], []byte(plantedSecret)) {
			t.Fatalf("planted secret not masked in %q", planted.Payload)
		}
	})
}

var pgKinds = []string{"Query", "Parse", "Bind", "DataRow", "CopyData", "ErrorResponse", "NoticeResponse", "PasswordMessage", "SASLInitialResponse", "SASLResponse", "Describe"}

// FuzzMaskPostgres: arbitrary bytes as a payload of every kind (whole, fragmented),
// and as the content of well-formed messages: no panic, framing kept, planted secret
// masked.
func FuzzMaskPostgres(f *testing.F) {
	m := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, p []byte, sel uint8) {
		kind := pgKinds[int(sel)%len(pgKinds)]
		conv := pgConv{cols: []string{"id", "password", "note"}, stmts: map[string]string{"s": "select * from t where password = $1"}}
		raw := pgFrame(kind, schemas.Client, append([]byte(nil), p...))
		m.Frame(raw, "db", conv.c())
		_, rawErr := pgwire.CheckedBody(p)
		if _, err := pgwire.CheckedBody(raw.Payload); rawErr == nil && err != nil {
			t.Fatalf("%s: framing lost: %v", kind, err)
		}
		if kind == "Describe" {
			return
		}
		msg := pgMessage(kind, p)
		whole := pgFrame(kind, schemas.Client, append([]byte(nil), msg...))
		m.Frame(whole, "db", conv.c())
		if _, err := pgwire.CheckedBody(whole.Payload); err != nil || whole.Payload[0] != msg[0] {
			t.Fatalf("%s: framing lost: %v", kind, err)
		}
		// The secret is looked for after a line's "password=", which the detector
		// must find in any value, text or not: p may also hold its text bare,
		// which no detector can tell from any other word.
		if bytes.Contains(whole.Payload, []byte("\npassword="+plantedSecret)) {
			t.Fatalf("%s: planted secret not masked", kind)
		}
		n := 2 + int(sel>>4)%3
		fconv := conv.c()
		var joined []byte
		for i, part := range cut(msg, n) {
			ff := pgFrame(kind, schemas.Server, append([]byte(nil), part...))
			ff.Fragment, ff.Final = int32(i), i == n-1
			m.Frame(ff, "db", fconv)
			if len(ff.Payload) != len(part) {
				t.Fatalf("%s fragment %d changed length", kind, i)
			}
			joined = append(joined, ff.Payload...)
		}
		if _, err := pgwire.CheckedBody(joined); err != nil || joined[0] != msg[0] {
			t.Fatalf("%s: fragmented framing lost: %v", kind, err)
		}
	})
}
