package mask

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// splitCorpus holds secrets in their context: the text a frame carries and the
// secret in it.
var splitCorpus = []struct{ text, secret string }{
	{"token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl end\r\n", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
	{"export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\r\n", "AKIAIOSFODNN7EXAMPLE"},
	{"card 4111 1111 1111 1111 exp 12/29\r\n", "4111 1111 1111 1111"},
	{"mail alice.smith@example.com now\r\n", "alice.smith@example.com"},
	{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAxyzSecretBody\n-----END RSA PRIVATE KEY-----\n", "MIIEowIBAAKCAQEAxyzSecretBody"},
	{"GITHUB_TOKEN ghp_" + strings.Repeat("aB3", 12) + " set\r\n", "ghp_" + strings.Repeat("aB3", 12)},
}

// streamFrames masks texts as consecutive SSH channel data frames of one channel
// and direction, the way the processor does, and returns what each became.
func streamFrames(t *testing.T, m *Masker, dir schemas.Direction, texts ...string) [][]byte {
	t.Helper()
	conv := sshConv()
	var out [][]byte
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, s := range texts {
		f := sshFrame("ssh.channel.data", dir, []byte(s))
		f.Seq, f.TS = int64(i+1), ts
		m.Frame(f, "box", conv)
		conv.Stitch(f, protocol.Limits{})
		out = append(out, f.Payload)
	}
	return out
}

// TestSecretSplitAtEveryByteIsMasked: a secret split between two frames at any byte
// is masked wherever it lies in the later frame, and whole wherever it lies whole in
// either frame; the frames keep their lengths.
func TestSecretSplitAtEveryByteIsMasked(t *testing.T) {
	m := defaultMasker(t)
	for _, c := range splitCorpus {
		start := strings.Index(c.text, c.secret)
		end := start + len(c.secret)
		for _, dir := range []schemas.Direction{schemas.Server, schemas.Client} {
			for k := 0; k <= len(c.text); k++ {
				out := streamFrames(t, m, dir, c.text[:k], c.text[k:])
				joined := string(out[0]) + string(out[1])
				if len(joined) != len(c.text) {
					t.Fatalf("%q split at %d: length %d, want %d", c.secret, k, len(joined), len(c.text))
				}
				from := max(start, k) // the secret's bytes in the later frame, and all of it when whole in one
				if k <= start || k >= end {
					from = start
				}
				for j := from; j < end; j++ {
					if joined[j] != '*' && joined[j] != '\n' {
						t.Fatalf("%s %q split at %d: byte %d not masked: %q | %q", dir, c.secret, k, j, out[0], out[1])
					}
				}
			}
		}
	}
}

// A private key block far longer than the window, in small frames, is masked to its
// END line.
func TestPrivateKeyAcrossManyFrames(t *testing.T) {
	m := defaultMasker(t)
	body := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVm\n", 200)
	text := "$ cat id_rsa\r\n-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + "-----END OPENSSH PRIVATE KEY-----\r\n$ "
	var chunks []string
	for i := 0; i < len(text); i += 97 {
		chunks = append(chunks, text[i:min(i+97, len(text))])
	}
	joined := bytes.Join(streamFrames(t, m, schemas.Server, chunks...), nil)
	if bytes.Contains(joined, []byte("QUJD")) || !bytes.Contains(joined, []byte("-----END OPENSSH PRIVATE KEY-----")) {
		t.Errorf("key body not masked across frames: %q", joined[:300])
	}
}

// FuzzMaskSSHStream: any bytes split anywhere into three frames mask without panic
// and keep their lengths, and an address planted across the cuts is masked in the
// frame that completes it.
func FuzzMaskSSHStream(f *testing.F) {
	m, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig"), uint16(10), uint16(30), false)
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"), uint16(33), uint16(44), true)
	f.Fuzz(func(t *testing.T, p []byte, a, b uint16, client bool) {
		dir := schemas.Server
		if client {
			dir = schemas.Client
		}
		planted := append(append(append([]byte(nil), p...), "\nmail alice.smith@example.com\n"...), p...)
		i := int(a) % (len(planted) + 1)
		j := i + int(b)%(len(planted)-i+1)
		out := streamFrames(t, m, dir, string(planted[:i]), string(planted[i:j]), string(planted[j:]))
		joined := bytes.Join(out, nil)
		if len(joined) != len(planted) {
			t.Fatalf("length %d → %d", len(planted), len(joined))
		}
		at := len(p) + len("\nmail ")
		// The conversation masks each frame as it comes: the one that completes
		// the address masks its part, and an address whole in one frame is masked
		// whole. (Its part in earlier frames is masked by the pipeline, which holds
		// them back: FuzzHoldBack.)
		end := at + len("alice.smith@example.com")
		from := at
		for _, cut := range []int{i, j} {
			if cut > from && cut < end {
				from = cut
			}
		}
		for k := from; k < end; k++ {
			if joined[k] != '*' {
				t.Fatalf("byte %d of the planted address not masked (cuts %d, %d): %q", k, i, j, joined)
			}
		}
	})
}

// The SSH conversation finds split secrets only through protocol.StreamRules.
var _ protocol.StreamRules = rulesView{}
