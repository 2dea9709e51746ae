package pipeline

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// panicOn returns a processor whose per-frame hook panics on the frames of
// sessionID at the given seqs.
func panicOn(t *testing.T, sessionID string, seqs ...int64) *Processor {
	t.Helper()
	m, err := mask.New(mask.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[int64]bool{}
	for _, s := range seqs {
		bad[s] = true
	}
	keys := integrity.Keys{sessiontest.NewKey(1).Public().(ed25519.PublicKey), sessiontest.NewKey(2).Public().(ed25519.PublicKey)}
	p, err := New(Config{Masker: m, TrustedKeys: keys, SigningKey: processorKey, FrameHook: func(f *schemas.Frame) {
		if f.SessionID == sessionID && bad[f.Seq] {
			panic("injected failure")
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailingFrameIsWithheldAlertedAndProcessingGoesOn(t *testing.T) {
	ssh := sshSession(alice, t0)
	pg := pgSession(t, alice, t0)
	// The failing frame is the server output that carries an AWS key.
	var failSeq int64 = -1
	for _, f := range ssh.Frames {
		if bytes.Contains(f.Payload, []byte("AKIAIOSFODNN7EXAMPLE")) {
			failSeq = f.Seq
		}
	}
	p := panicOn(t, ssh.ID, failSeq)
	var out Output
	var errs []*FrameError
	// Interleave the two sessions, as on a partition.
	for i := 0; i < max(len(ssh.Frames), len(pg.Frames)); i++ {
		for _, s := range [][]schemas.Frame{ssh.Frames, pg.Frames} {
			if i >= len(s) {
				continue
			}
			if err := p.Frame(s[i], &out); err != nil {
				var fe *FrameError
				if !errors.As(err, &fe) {
					t.Fatalf("error %T %v, want *FrameError", err, err)
				}
				errs = append(errs, fe)
			}
		}
	}
	if len(errs) != 1 || errs[0].SessionID != ssh.ID || errs[0].Seq != failSeq || errs[0].Panic != "injected failure" {
		t.Fatalf("errors %+v, want one for seq %d", errs, failSeq)
	}

	// Every frame of both sessions went out exactly once, in order, and chains.
	for _, s := range []struct {
		id string
		n  int
	}{{ssh.ID, len(ssh.Frames)}, {pg.ID, len(pg.Frames)}} {
		var prev []byte
		var got []schemas.Frame
		for _, f := range out.Frames {
			if f.SessionID == s.id {
				got = append(got, f)
			}
		}
		if len(got) != s.n {
			t.Fatalf("session %s: %d frames out, %d in", s.id, len(got), s.n)
		}
		for i, f := range got {
			if i == 0 {
				prev = f.PrevHash // the session's genesis
			}
			if f.Seq != int64(i) {
				t.Fatalf("session %s: frame %d has seq %d", s.id, i, f.Seq)
			}
			if err := schemas.CheckLink(&f, prev); err != nil {
				t.Errorf("session %s: %v", s.id, err)
			}
			prev = f.Hash
			if f.SessionID == ssh.ID && f.Seq == failSeq && (len(f.Payload) != 0 || f.Masks[Withheld] != 1 || len(f.Masks) != 1) {
				t.Errorf("failed frame forwarded with payload %q masks %v", f.Payload, f.Masks)
			}
			if f.SessionID == ssh.ID && f.Seq == failSeq {
				if err := schemas.VerifyMasked(processorKey.Public().(ed25519.PublicKey), &f); err != nil {
					t.Errorf("withheld frame not signed by the processor: %v", err)
				}
			}
		}
	}

	// One processing_failed alert, naming session, seq and the error.
	var alerts []audit.Record
	for _, r := range out.Audit {
		if r.Type == audit.TypeIntegrity && r.Alert == integrity.ProcessingFailed {
			alerts = append(alerts, r)
		}
	}
	if len(alerts) != 1 || alerts[0].SessionID != ssh.ID || alerts[0].Seq != failSeq || !bytes.Contains([]byte(alerts[0].AlertDetail), []byte("injected failure")) {
		t.Fatalf("processing_failed alerts %+v", alerts)
	}

	// The session went on: later commands stitched, summary complete and signed.
	var last schemas.Session
	for _, s := range out.Sessions {
		if s.SessionID == ssh.ID {
			last = s
		}
	}
	if last.Status != schemas.StatusEnded || last.SignatureOK == nil || !*last.SignatureOK || last.Frames != int64(len(ssh.Frames)) || len(last.Integrity) != 1 {
		t.Errorf("summary %+v", last)
	}
	// The failed frame may have been a password prompt: the next line typed on its
	// channel is masked as secret input, and still stitched.
	var after []schemas.Command
	for _, c := range out.Commands {
		if c.SessionID == ssh.ID && c.Kind == "shell" && c.CommandSeq > failSeq {
			after = append(after, c)
		}
	}
	if len(after) != 1 || after[0].Text == "exit" || after[0].Masks[mask.TypedSecret] == 0 {
		t.Errorf("commands after the failed frame: %+v", after)
	}

	// Nothing carries the secret of the failed frame.
	all, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(all, []byte("AKIAIOSFODNN7EXAMPLE")) {
		t.Error("the failed frame's secret reached the output")
	}
}

func TestFailureIsDeterministicAcrossRestore(t *testing.T) {
	ssh := sshSession(alice, t0)
	// Fail a keystroke at the password prompt: the masking state is dropped, and the
	// outcome is the same whether or not the state was saved and restored around it.
	fail := int64(9)
	whole := marshalOutput(t, processAll(panicOn(t, ssh.ID, fail), ssh.Frames))
	p := panicOn(t, ssh.ID, fail)
	var out Output
	for i, f := range ssh.Frames {
		p.Frame(f, &out)
		if int64(i) == fail-1 || int64(i) == fail {
			saved, err := p.TakeDirty()
			if err != nil {
				t.Fatal(err)
			}
			q := panicOn(t, ssh.ID, fail)
			for _, c := range saved {
				if err := q.Restore(c.SessionID, c.Value); err != nil {
					t.Fatal(err)
				}
			}
			p = q
		}
	}
	if got := marshalOutput(t, out); got != whole {
		t.Errorf("outputs differ after restore:\n%s\n%s", got, whole)
	}
}
