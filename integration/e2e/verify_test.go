//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
)

// Recorded sessions verify; rows altered, deleted or forged in the store afterwards
// are reported by kind and seq, and restoring them verifies again.
func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "vera-" + randHex(3)
	token := h.token(t, sub, pgGroup)
	for range 3 {
		run := h.psql(t, token, sub, "SELECT 1 AS one", "SELECT 'verify me' AS v", "SELECT 2 AS two")
		if run.err != nil || run.stdout != "1\nverify me\n2\n" {
			t.Fatalf("psql: %v %q %q", run.err, run.stdout, run.stderr)
		}
	}
	sessions := h.waitSessions(t, sub, 3)
	auditor := h.token(t, "e2e-verifier", auditors)
	for _, s := range sessions {
		rep := h.verify(t, auditor, s.SessionID)
		if !rep.OK || rep.Status != verify.StatusOK || rep.Signature.Status != verify.SigTrusted ||
			rep.LastSeq != s.LastSeq || len(rep.Problems) != 0 {
			t.Fatalf("intact session %s: %+v", s.SessionID, rep)
		}
	}

	t.Run("altered payload", func(t *testing.T) {
		id := sessions[0].SessionID
		q := h.findFrame(t, id, schemas.Client, "Query", "verify me")
		h.setFrame(t, id, q.Seq, map[string][]byte{"payload": bytes.Replace(q.Payload, []byte("verify me"), []byte("forged it"), 1)})
		h.expectProblems(t, auditor, id, verify.Problem{Kind: verify.ProblemDigest, Seq: q.Seq})
		h.setFrame(t, id, q.Seq, map[string][]byte{"payload": q.Payload})
		h.expectOK(t, auditor, id)
	})

	t.Run("deleted frame", func(t *testing.T) {
		id := sessions[1].SessionID
		row := h.findFrame(t, id, schemas.Server, "DataRow", "verify me")
		h.exec(t, fmt.Sprintf("ALTER TABLE frames DELETE WHERE session_id = '%s' AND seq = %d SETTINGS mutations_sync = 1", id, row.Seq))
		if n, _, _ := h.frameCount(id); n != sessions[1].LastSeq {
			t.Fatalf("after the delete %d frames are stored, want %d", n, sessions[1].LastSeq)
		}
		h.expectProblems(t, auditor, id, verify.Problem{Kind: verify.ProblemGap, Seq: row.Seq, SeqEnd: row.Seq})
	})

	t.Run("forged session end", func(t *testing.T) {
		id := sessions[2].SessionID
		end := h.frame(t, id, sessions[2].LastSeq)
		if end.Kind != schemas.KindSessionEnd {
			t.Fatalf("seq %d is %s, not session.end", end.Seq, end.Kind)
		}
		restore := map[string][]byte{"payload": end.Payload, "payload_digest": end.PayloadDigest, "hash": end.Hash, "session_end": typedEnd(t, end.End)}

		// A new signature, with digest and chain hash recomputed as a forger with
		// write access to the store would: only the signature gives it away.
		h.forgeEnd(t, end, func(e *schemas.SessionEnd) { e.Signature[0] ^= 0xff })
		rep := h.expectProblems(t, auditor, id, verify.Problem{Kind: verify.ProblemSignature, Seq: end.Seq})
		if rep.Signature.Status != verify.SigInvalid {
			t.Errorf("signature status %q, want %q", rep.Signature.Status, verify.SigInvalid)
		}
		h.setFrame(t, id, end.Seq, restore)
		h.expectOK(t, auditor, id)

		// A session.end claiming an earlier last frame, to cover a truncation.
		h.forgeEnd(t, end, func(e *schemas.SessionEnd) { e.LastSeq -= 2 })
		h.expectProblems(t, auditor, id,
			verify.Problem{Kind: verify.ProblemEnd, Seq: end.Seq}, verify.Problem{Kind: verify.ProblemSignature, Seq: end.Seq})
		h.setFrame(t, id, end.Seq, restore)
		h.expectOK(t, auditor, id)

		// Only the typed end fields (what the sessions view is built from) edited.
		fake := *end.End
		fake.LastSeq, fake.Frames = 3, 4
		h.setFrame(t, id, end.Seq, map[string][]byte{"session_end": typedEnd(t, &fake)})
		h.expectProblems(t, auditor, id, verify.Problem{Kind: verify.ProblemEnd, Seq: end.Seq})
		h.setFrame(t, id, end.Seq, restore)
		h.expectOK(t, auditor, id)
	})
}

func (h *harness) verify(t *testing.T, token, id string) verify.Report {
	t.Helper()
	rep, err := h.client(t, token).Verify(context.Background(), id)
	if err != nil {
		t.Fatalf("verify %s: %v", id, err)
	}
	return rep
}

// expectProblems verifies through the API and wants exactly the problems given
// (kind and seq range; details are free text).
func (h *harness) expectProblems(t *testing.T, token, id string, want ...verify.Problem) verify.Report {
	t.Helper()
	rep := h.verify(t, token, id)
	got := make([]verify.Problem, len(rep.Problems))
	for i, p := range rep.Problems {
		got[i] = verify.Problem{Kind: p.Kind, Seq: p.Seq, SeqEnd: p.SeqEnd}
	}
	if rep.OK || rep.Status != verify.StatusFailed || !slices.Equal(got, want) {
		t.Errorf("verify %s: ok=%v status %q problems %v; want failed with %v", id, rep.OK, rep.Status, rep.Problems, want)
	}
	return rep
}

func (h *harness) expectOK(t *testing.T, token, id string) {
	t.Helper()
	if rep := h.verify(t, token, id); !rep.OK || len(rep.Problems) != 0 {
		t.Errorf("verify %s after restoring: %+v", id, rep)
	}
}

// findFrame returns the session's first frame of a direction and kind whose payload
// holds text.
func (h *harness) findFrame(t *testing.T, id string, dir schemas.Direction, kind, text string) schemas.Frame {
	t.Helper()
	for _, f := range h.frames(t, id) {
		if f.Direction == dir && f.Kind == kind && bytes.Contains(f.Payload, []byte(text)) {
			if len(f.PayloadSalt) == 0 {
				t.Fatalf("frame %d (%s) is masked; its digest is not checkable", f.Seq, kind)
			}
			return f
		}
	}
	t.Fatalf("no %s %s frame with %q in session %s", dir, kind, text, id)
	return schemas.Frame{}
}

// setFrame overwrites columns of one stored frame in place, synchronously.
func (h *harness) setFrame(t *testing.T, id string, seq int64, cols map[string][]byte) {
	t.Helper()
	var set []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range cols {
			if !yield(k) {
				return
			}
		}
	}) {
		set = append(set, fmt.Sprintf("%s = unhex('%s')", name, hex.EncodeToString(cols[name])))
	}
	h.exec(t, fmt.Sprintf("ALTER TABLE frames UPDATE %s WHERE session_id = '%s' AND seq = %d SETTINGS mutations_sync = 1",
		strings.Join(set, ", "), id, seq))
}

// forgeEnd rewrites a session.end record and recomputes its payload digest and
// chain hash, so that the frame is consistent with the chain.
func (h *harness) forgeEnd(t *testing.T, end schemas.Frame, change func(*schemas.SessionEnd)) {
	t.Helper()
	var e schemas.SessionEnd
	if err := json.Unmarshal(end.Payload, &e); err != nil {
		t.Fatalf("session.end payload: %v", err)
	}
	e.Signature = slices.Clone(e.Signature)
	change(&e)
	payload, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	f := end
	f.Payload, f.End = payload, &e
	f.PayloadDigest = schemas.PayloadDigest(f.PayloadSalt, payload)
	if f.Hash, err = schemas.ChainHash(&f); err != nil {
		t.Fatal(err)
	}
	h.setFrame(t, end.SessionID, end.Seq, map[string][]byte{
		"payload": payload, "payload_digest": f.PayloadDigest, "hash": f.Hash, "session_end": typedEnd(t, &e)})
}

// typedEnd is the session_end column's JSON for an end record.
func typedEnd(t *testing.T, e *schemas.SessionEnd) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
