package integrity

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func record(t *testing.T, n int) *sessiontest.Session {
	t.Helper()
	s := sessiontest.Start(schemas.SSH, schemas.SessionStart{Subject: "ci"}, sessiontest.NewKey(7), t0)
	for i := 0; i < n; i++ {
		s.Add(schemas.Client, "ssh.channel.data", 0, []byte("x"))
	}
	s.End("done")
	return s
}

// run checks every frame and returns the alert kinds and the end's signature verdict.
func run(frames []schemas.Frame, keys Keys) (kinds []string, details []string, sig *bool, rejected int) {
	tip := NewTip()
	for i := range frames {
		alerts, accept, s := Check(&tip, &frames[i], keys)
		for _, a := range alerts {
			kinds = append(kinds, a.Kind)
			details = append(details, a.String())
		}
		if !accept {
			rejected++
		}
		if s != nil {
			sig = s
		}
	}
	return kinds, details, sig, rejected
}

func trusted(s *sessiontest.Session) Keys { return Keys{s.Key.Public().(ed25519.PublicKey)} }

func TestCleanSessionHasNoAlerts(t *testing.T) {
	s := record(t, 5)
	kinds, _, sig, _ := run(s.Frames, trusted(s))
	if len(kinds) != 0 || sig == nil || !*sig {
		t.Fatalf("alerts %v, signature %v", kinds, sig)
	}
}

// With no trusted keys configured, a valid signature proves nothing about who
// signed: the session is not marked signature_ok, and no alert is raised per session.
func TestNoTrustedKeysIsNotSignatureOK(t *testing.T) {
	s := record(t, 5)
	kinds, _, sig, _ := run(s.Frames, nil)
	if len(kinds) != 0 || sig == nil || *sig {
		t.Fatalf("alerts %v, signature %v; want no alerts and signature_ok false", kinds, sig)
	}
}

func TestSeqGap(t *testing.T) {
	s := record(t, 5)
	frames := append(append([]schemas.Frame{}, s.Frames[:2]...), s.Frames[4:]...) // drop seqs 2 and 3
	kinds, details, sig, _ := run(frames, trusted(s))
	// The end names the tip that did arrive, so the gap is the only alert.
	if len(kinds) != 1 || kinds[0] != Gap {
		t.Fatalf("alerts %v", details)
	}
	if !strings.Contains(details[0], "seqs 2..3 missing") {
		t.Errorf("detail %q", details[0])
	}
	// The signature itself is valid: the gateway did sign this tip.
	if sig == nil || !*sig {
		t.Errorf("signature %v", sig)
	}
}

func TestMissingStart(t *testing.T) {
	s := record(t, 3)
	kinds, _, _, _ := run(s.Frames[2:], nil)
	if len(kinds) == 0 || kinds[0] != Gap {
		t.Fatalf("alerts %v", kinds)
	}
}

func TestBrokenChain(t *testing.T) {
	t.Run("payload altered", func(t *testing.T) {
		s := record(t, 5)
		s.Frames[3].Payload = []byte("y")
		kinds, details, _, _ := run(s.Frames, nil)
		if len(kinds) != 1 || kinds[0] != Digest || !strings.Contains(details[0], "payload does not match its digest") {
			t.Fatalf("alerts %v", details)
		}
	})
	t.Run("header altered", func(t *testing.T) {
		s := record(t, 5)
		s.Frames[2].Direction = schemas.Server
		kinds, _, _, _ := run(s.Frames, nil)
		if len(kinds) != 1 || kinds[0] != Hash {
			t.Fatalf("alerts %v", kinds)
		}
	})
	t.Run("frame replaced by a resealed one", func(t *testing.T) {
		s := record(t, 5)
		f := s.Frames[3]
		f.Payload = []byte("rm -rf /")
		if err := schemas.Seal(&f, make([]byte, 32)); err != nil { // sealed after a forged predecessor
			t.Fatal(err)
		}
		s.Frames[3] = f
		kinds, _, _, _ := run(s.Frames, nil)
		// Seq 3 does not chain to seq 2, and seq 4 does not chain to the new seq 3.
		if len(kinds) != 2 || kinds[0] != PrevHash || kinds[1] != PrevHash {
			t.Fatalf("alerts %v", kinds)
		}
	})
	t.Run("masked frame still verifies", func(t *testing.T) {
		s := record(t, 5)
		s.Frames[2].Payload, s.Frames[2].PayloadSalt, s.Frames[2].Masks = []byte("*"), nil, map[string]int64{"secret_input": 1}
		if kinds, _, _, _ := run(s.Frames, nil); len(kinds) != 0 {
			t.Fatalf("alerts %v", kinds)
		}
	})
}

func TestForgedEnd(t *testing.T) {
	t.Run("signed by another key than the one it names", func(t *testing.T) {
		s := record(t, 3)
		end := &s.Frames[len(s.Frames)-1]
		e := *end.End
		e.GatewayKey = sessiontest.NewKey(9).Public().(ed25519.PublicKey)
		end.End = &e
		kinds, _, sig, _ := run(s.Frames, nil)
		if sig == nil || *sig || !contains(kinds, Signature) {
			t.Fatalf("alerts %v sig %v", kinds, sig)
		}
	})
	t.Run("valid signature, wrong tip", func(t *testing.T) {
		s := record(t, 3)
		end := &s.Frames[len(s.Frames)-1]
		e := *end.End
		e.FinalHash = make([]byte, 32)
		if err := schemas.SignEnd(s.Key, s.ID, &e); err != nil {
			t.Fatal(err)
		}
		end.End = &e
		kinds, _, sig, _ := run(s.Frames, trusted(s))
		if sig == nil || !*sig || len(kinds) != 1 || kinds[0] != End {
			t.Fatalf("alerts %v sig %v", kinds, sig)
		}
	})
	t.Run("untrusted key", func(t *testing.T) {
		s := record(t, 3)
		other := sessiontest.NewKey(8).Public().(ed25519.PublicKey)
		keys, err := ParseKeys([]string{base64.StdEncoding.EncodeToString(other)})
		if err != nil {
			t.Fatal(err)
		}
		kinds, _, sig, _ := run(s.Frames, keys)
		if sig == nil || *sig || len(kinds) != 1 || kinds[0] != Signature {
			t.Fatalf("alerts %v sig %v", kinds, sig)
		}
		trusted, _ := ParseKeys([]string{base64.StdEncoding.EncodeToString(s.Key.Public().(ed25519.PublicKey))})
		if kinds, _, sig, _ := run(s.Frames, trusted); len(kinds) != 0 || !*sig {
			t.Fatalf("trusted key: alerts %v", kinds)
		}
	})
}

func TestReplayedSeqIsRejected(t *testing.T) {
	s := record(t, 3)
	frames := append(append([]schemas.Frame{}, s.Frames[:3]...), s.Frames[2])
	frames = append(frames, s.Frames[3:]...)
	kinds, _, _, rejected := run(frames, nil)
	if rejected != 1 || len(kinds) != 1 || kinds[0] != OutOfOrder {
		t.Fatalf("alerts %v rejected %d", kinds, rejected)
	}
}

func TestParseKeysRejectsGarbage(t *testing.T) {
	if _, err := ParseKeys([]string{"not-a-key"}); err == nil {
		t.Error("accepted")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
