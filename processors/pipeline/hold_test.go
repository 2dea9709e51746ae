package pipeline

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// plantedSecrets are one secret of every detector in the context it is written
// in: what a frame carries, and the bytes that must never leave unmasked.
var plantedSecrets = []struct{ text, secret string }{
	{"mail alice.smith@example.com now\r\n", "alice.smith@example.com"},
	{"card 4111 1111 1111 1111 exp 12/29\r\n", "4111 1111 1111 1111"},
	{"pan=5500000000000004;\r\n", "5500000000000004"},
	{"ssn 219-09-9999 on file\r\n", "219-09-9999"},
	{"iban DE89 3704 0044 0532 0130 00 ok\r\n", "DE89 3704 0044 0532 0130 00"},
	{"call +44 20 7946 0958 today\r\n", "+44 20 7946 0958"},
	{"call (415) 555-2671 today\r\n", "(415) 555-2671"},
	{"token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl end\r\n", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
	{"export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\r\n", "AKIAIOSFODNN7EXAMPLE"},
	{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\r\n", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
	{"GITHUB_TOKEN ghp_" + strings.Repeat("aB3", 12) + " set\r\n", "ghp_" + strings.Repeat("aB3", 12)},
	{"curl -H 'Authorization: Bearer abcdef0123456789ABCDEF.xyz' x\r\n", "abcdef0123456789ABCDEF.xyz"},
	{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAxyzSecretBody\n-----END RSA PRIVATE KEY-----\n", "MIIEowIBAAKCAQEAxyzSecretBody"},
	{"ALTER ROLE app PASSWORD 'n3w s3cret pa55';\r\n", "n3w s3cret pa55"},
	{"psql postgres://app:Sup3rS3cret@db:5432/app\r\n", "Sup3rS3cret"},
	{"export password=hunter2hunter2 now\r\n", "hunter2hunter2"},
}

// splitSession records text written on one SSH channel in one direction, cut
// into frames at cuts, between an exec channel's open and its close.
func splitSession(dir schemas.Direction, text string, cuts ...int) *sessiontest.Session {
	start := alice
	start.Target = "box"
	s := sessiontest.Start(schemas.SSH, start, sessiontest.NewKey(2), t0)
	s.Add(schemas.Client, "ssh.channel.open", 0, ssh.Marshal(&struct{ T string }{"session"}))
	s.Add(schemas.Client, "ssh.request.exec", 0, ssh.Marshal(&struct{ C string }{"cat"}))
	prev := 0
	for _, c := range append(cuts, len(text)) {
		if c > prev {
			s.Add(dir, "ssh.channel.data", 0, []byte(text[prev:c]))
		}
		prev = c
	}
	s.Add(dir, "ssh.channel.eof", 0, nil)
	s.Add(schemas.Server, "ssh.channel.close", 0, nil)
	return s
}

// checkSplit processes a split session and fails if any byte of the secret
// leaves unmasked in a frame or a command, or if the frames do not leave once
// each, in seq order, verifying.
func checkSplit(t *testing.T, text, secret string, dir schemas.Direction, cuts ...int) {
	t.Helper()
	s := splitSession(dir, text, cuts...)
	out := processAll(sharedProcessor(t), s.Frames)
	checkFrames(t, s.Frames, out.Frames)
	var data []byte
	for _, f := range out.Frames {
		if f.Kind == "ssh.channel.data" {
			data = append(data, f.Payload...)
		}
	}
	at := strings.Index(text, secret)
	if len(data) != len(text) {
		t.Fatalf("%q cut at %v: %d bytes of data, want %d", secret, cuts, len(data), len(text))
	}
	for i := at; i < at+len(secret); i++ {
		if data[i] != '*' && data[i] != '\n' {
			t.Fatalf("%s %q cut at %v: byte %d leaves unmasked: %q", dir, secret, cuts, i-at, data)
		}
	}
	for _, c := range out.Commands {
		if strings.Contains(c.Text, secret) {
			t.Fatalf("%q cut at %v: command %q", secret, cuts, c.Text)
		}
	}
}

// checkFrames: every frame recorded leaves exactly once, in seq order, and its
// chain link verifies; a signed one's signature verifies.
func checkFrames(t *testing.T, in, out []schemas.Frame) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("%d frames out, %d in", len(out), len(in))
	}
	prev := schemas.ZeroHash
	for i, f := range out {
		if f.Seq != in[i].Seq {
			t.Fatalf("frame %d has seq %d, want %d", i, f.Seq, in[i].Seq)
		}
		if err := schemas.CheckLink(&f, prev); err != nil {
			t.Fatal(err)
		}
		if len(f.PayloadSalt) == 0 && !f.IsLifecycle() && f.ProcessorSig != nil {
			if err := schemas.VerifyMasked(processorKey.Public().(ed25519.PublicKey), &f); err != nil {
				t.Fatalf("seq %d: %v", f.Seq, err)
			}
		}
		prev = f.Hash
	}
}

// TestSecretSplitAcrossTwoFramesIsMaskedInBoth: a secret of every kind, cut at
// every byte boundary into two frames in either direction, leaves no byte
// unmasked in tapline.frames.
func TestSecretSplitAcrossTwoFramesIsMaskedInBoth(t *testing.T) {
	for _, c := range plantedSecrets {
		for _, dir := range []schemas.Direction{schemas.Server, schemas.Client} {
			for k := 1; k < len(c.text); k++ {
				checkSplit(t, c.text, c.secret, dir, k)
			}
		}
	}
}

// TestSecretSplitAcrossThreeFramesIsMaskedInAll: the same with every pair of
// cuts around and inside the secret (three frames).
func TestSecretSplitAcrossThreeFramesIsMaskedInAll(t *testing.T) {
	for _, c := range plantedSecrets {
		at := strings.Index(c.text, c.secret)
		lo, hi := max(at-2, 1), min(at+len(c.secret)+2, len(c.text)-1)
		dir := schemas.Server
		if len(c.secret)%2 == 0 {
			dir = schemas.Client
		}
		for i := lo; i <= hi; i++ {
			for j := i + 1; j <= hi; j++ {
				checkSplit(t, c.text, c.secret, dir, i, j)
			}
		}
	}
}

// TestSecretTypedOneKeystrokePerFrame: an agent writing a token one byte per
// frame on a channel without a pty (nothing echoes, no prompt) leaves none of it
// in the frames.
func TestSecretTypedOneKeystrokePerFrame(t *testing.T) {
	text := "export GITHUB_TOKEN=ghp_" + strings.Repeat("Zq9", 12) + "\n"
	cuts := make([]int, 0, len(text))
	for i := 1; i < len(text); i++ {
		cuts = append(cuts, i)
	}
	checkSplit(t, text, "ghp_"+strings.Repeat("Zq9", 12), schemas.Client, cuts...)
}

// TestHeldFrameSurvivesRestart: saving and restoring the state at every frame
// boundary, while frames are held, gives exactly the outputs of an uninterrupted
// run: nothing lost, nothing twice.
func TestHeldFrameSurvivesRestart(t *testing.T) {
	for _, c := range plantedSecrets[:4] {
		at := strings.Index(c.text, c.secret)
		s := splitSession(schemas.Server, c.text, at+2, at+5)
		s.End("client closed")
		want := processAll(newProcessor(t), s.Frames)
		for cut := 1; cut < len(s.Frames); cut++ {
			p := newProcessor(t)
			got := processAll(p, s.Frames[:cut])
			held := len(p.sessions[s.ID].Held)
			p = saveRestore(t, p, map[string][]byte{})
			rest := processAll(p, s.Frames[cut:])
			got.Frames = append(got.Frames, rest.Frames...)
			got.Commands = append(got.Commands, rest.Commands...)
			got.Sessions = append(got.Sessions, rest.Sessions...)
			got.Audit = append(got.Audit, rest.Audit...)
			if a, b := marshalOutput(t, got), marshalOutput(t, want); a != b {
				t.Fatalf("%q restored after frame %d (%d held): outputs differ", c.secret, cut, held)
			}
		}
		checkFrames(t, s.Frames, want.Frames)
		for _, f := range want.Frames {
			if len(f.Masks) > 0 && f.ProcessorSig == nil {
				t.Errorf("masked seq %d is not signed", f.Seq)
			}
		}
	}
}

// TestHoldIsBounded: a held frame leaves when a later frame of its session comes
// DefaultHoldFor after it, or when the session holds too much behind it, and frames of
// other channels queued behind it keep their seq order.
func TestHoldIsBounded(t *testing.T) {
	start := alice
	start.Target = "box"
	s := sessiontest.Start(schemas.SSH, start, sessiontest.NewKey(2), t0)
	s.Add(schemas.Client, "ssh.channel.open", 0, ssh.Marshal(&struct{ T string }{"session"}))
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("progress: 42"))
	held := s.Seq() - 1
	for i := range 3 {
		s.Add(schemas.Server, "ssh.channel.data", 1, []byte(fmt.Sprintf("line %d\n", i)))
	}
	s.Clock = s.Clock.Add(DefaultHoldFor)
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("late\n"))
	p := newProcessor(t)
	var out Output
	for _, f := range s.Frames[:len(s.Frames)-1] {
		p.Frame(f, &out)
	}
	for _, f := range out.Frames {
		if f.Seq >= held {
			t.Fatalf("seq %d left while seq %d is held", f.Seq, held)
		}
	}
	p.Frame(s.Frames[len(s.Frames)-1], &out)
	checkFrames(t, s.Frames, out.Frames)

	// Frames queued behind a held one: past MaxHeldFrames the oldest leave (and
	// with it every frame that waited only for it).
	s = sessiontest.Start(schemas.SSH, start, sessiontest.NewKey(2), t0)
	s.Step = 0
	s.Add(schemas.Server, "ssh.channel.data", 0, []byte("progress: 42"))
	for range MaxHeldFrames - 1 {
		s.Add(schemas.Server, "ssh.channel.data", 1, []byte("x\n"))
	}
	p = newProcessor(t)
	out = processAll(p, s.Frames)
	if n := len(p.sessions[s.ID].Held); n != MaxHeldFrames || len(out.Frames) != 1 {
		t.Fatalf("%d frames held, %d out; want %d held", n, len(out.Frames), MaxHeldFrames)
	}
	s.Add(schemas.Server, "ssh.channel.data", 1, []byte("x\n"))
	p.Frame(s.Frames[len(s.Frames)-1], &out)
	if n := len(p.sessions[s.ID].Held); n != 0 {
		t.Fatalf("%d frames still held", n)
	}
	checkFrames(t, s.Frames, out.Frames)
}

// TestSessionEndReleasesHeldFrames: the frames a session still holds leave, in
// order, before its session.end.
func TestSessionEndReleasesHeldFrames(t *testing.T) {
	s := splitSession(schemas.Client, "ghp_ABC", 4)
	s.End("client closed")
	// Drop the eof and close, which would release the frame themselves.
	frames := append(s.Frames[:len(s.Frames)-3:len(s.Frames)-3], s.Frames[len(s.Frames)-1])
	p := newProcessor(t)
	out := processAll(p, frames)
	seqs := []int64{}
	for _, f := range out.Frames {
		seqs = append(seqs, f.Seq)
	}
	if len(out.Frames) != len(frames) || out.Frames[len(out.Frames)-1].Kind != schemas.KindSessionEnd {
		t.Fatalf("frames out %v", seqs)
	}
	for i := range out.Frames[1:] {
		if out.Frames[i].Seq >= out.Frames[i+1].Seq {
			t.Fatalf("frames out of order: %v", seqs)
		}
	}
	if !bytes.Equal(out.Frames[4].Payload, []byte("ABC")) {
		t.Errorf("last data frame %q", out.Frames[4].Payload)
	}
}

var sharedMasker *mask.Masker

// sharedProcessor is newProcessor with one masker for the whole test binary and
// no signing key: compiling the rules and signing cost more than processing a
// short session (signatures over held frames are checked by the restart test).
func sharedProcessor(t testing.TB) *Processor {
	t.Helper()
	if sharedMasker == nil {
		m, err := mask.New(mask.Config{})
		if err != nil {
			t.Fatal(err)
		}
		sharedMasker = m
	}
	keys := integrity.Keys{sessiontest.NewKey(2).Public().(ed25519.PublicKey)}
	p, err := New(Config{Masker: sharedMasker, TrustedKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
