package verify

import (
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// session returns a recorded Postgres-like session of 14 frames: start, 12 protocol
// frames (one message in 3 fragments among them), signed end.
func session() *sessiontest.Builder {
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: "https://idp", Subject: "alice", Target: "app"})
	for i := range 4 {
		b.Step(time.Millisecond).Client("Query", 0, []byte("Q select "+strings.Repeat("x", i)))
		b.Step(time.Millisecond).Server("CommandComplete", 0, []byte("C SELECT 1"))
	}
	b.FragmentBytes = 4
	b.Server("DataRow", 0, []byte("D 123456789")) // 3 fragments
	b.FragmentBytes = 0
	b.Server("CommandComplete", 0, []byte("C SELECT 1"))
	return b.End("client closed")
}

func run(t *testing.T, b *sessiontest.Builder, frames []schemas.Frame, opt Options) Report {
	t.Helper()
	r, err := Session(b.ID, sessiontest.Seq(frames), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// trust returns Options trusting b's gateway key (and the processor keys given).
func trust(b *sessiontest.Builder, processors ...ed25519.PrivateKey) Options {
	opt := Options{TrustedKeys: []ed25519.PublicKey{b.Key.Public().(ed25519.PublicKey)}}
	for _, k := range processors {
		opt.TrustedProcessorKeys = append(opt.TrustedProcessorKeys, k.Public().(ed25519.PublicKey))
	}
	return opt
}

func kinds(r Report) string {
	var k []string
	for _, p := range r.Problems {
		k = append(k, p.String())
	}
	return strings.Join(k, "; ")
}

func onlyProblem(t *testing.T, r Report, kind string, seq int64) {
	t.Helper()
	if r.OK || r.Status != StatusFailed {
		t.Errorf("status %s ok=%v, want failed", r.Status, r.OK)
	}
	if len(r.Problems) != 1 || r.Problems[0].Kind != kind || r.Problems[0].Seq != seq {
		t.Fatalf("want exactly %s at seq %d, got: %s", kind, seq, kinds(r))
	}
}

func clone(fs []schemas.Frame) []schemas.Frame {
	out := slices.Clone(fs)
	for i := range out {
		out[i].Payload = slices.Clone(out[i].Payload)
	}
	return out
}

func TestIntactSessionVerifies(t *testing.T) {
	b := session()
	r := run(t, b, b.Frames, trust(b))
	if !r.OK || r.Status != StatusOK || len(r.Problems) != 0 {
		t.Fatalf("intact session: %s ok=%v problems: %s", r.Status, r.OK, kinds(r))
	}
	if r.Signature.Covers != "end-record" {
		t.Errorf("signature covers %q, want the whole end record", r.Signature.Covers)
	}
	if r.Frames != int64(len(b.Frames)) || r.LastSeq != int64(len(b.Frames)-1) || !r.Ended || r.EndReason != "client closed" {
		t.Errorf("report %+v", r)
	}
	if r.Signature.Status != SigTrusted {
		t.Errorf("with the gateway key trusted: signature %s", r.Signature.Status)
	}
}

// With no trusted keys configured, a session signed by any key is not "ok": the
// signature proves the end record consistent, not who wrote it.
func TestNoTrustedKeysIsUntrusted(t *testing.T) {
	b := session()
	_, other, _ := ed25519.GenerateKey(nil)
	for name, fs := range map[string][]schemas.Frame{"gateway's key": b.Frames, "any key": forgeEnd(t, b, other)} {
		r := run(t, b, fs, Options{})
		if r.OK || r.Status != StatusUntrusted || len(r.Problems) != 0 {
			t.Errorf("%s, no trusted keys: %s ok=%v problems: %s", name, r.Status, r.OK, kinds(r))
		}
		if r.Signature.Status != SigUntrustedConsistent {
			t.Errorf("%s: signature %s", name, r.Signature.Status)
		}
	}
}

// Rewriting the end record (reason, byte counts) and resealing its frame, which is
// the last in the chain and so not covered by any later hash, breaks the signature.
func TestRewrittenEndRecordFails(t *testing.T) {
	b := session()
	for name, change := range map[string]func(*schemas.SessionEnd){
		"reason":       func(e *schemas.SessionEnd) { e.Reason = "client closed normally" },
		"bytes_client": func(e *schemas.SessionEnd) { e.BytesClient = 1 },
		"frames":       func(e *schemas.SessionEnd) { e.Frames = 3 },
	} {
		fs := clone(b.Frames)
		n := len(fs)
		e := *fs[n-1].End
		change(&e)
		fs[n-1].End = &e
		fs[n-1].Payload, _ = json.Marshal(e)
		if err := schemas.Seal(&fs[n-1], fs[n-2].Hash); err != nil {
			t.Fatal(err)
		}
		r := run(t, b, fs, trust(b))
		onlyProblem(t, r, ProblemSignature, int64(n-1))
		if r.Signature.Status != SigInvalid {
			t.Errorf("%s rewritten: signature %s", name, r.Signature.Status)
		}
	}
}

// Recordings signed before frame schema v2 (tip only) still verify, and say so.
func TestLegacyEndSignature(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	n := len(fs)
	e := *fs[n-1].End
	msg, _ := schemas.SignatureMessage(b.ID, e.LastSeq, e.FinalHash)
	e.Signature = ed25519.Sign(b.Key, msg)
	fs[n-1].End = &e
	fs[n-1].Payload, _ = json.Marshal(e)
	if err := schemas.Seal(&fs[n-1], fs[n-2].Hash); err != nil {
		t.Fatal(err)
	}
	r := run(t, b, fs, trust(b))
	if !r.OK || r.Signature.Covers != "tip" {
		t.Errorf("v1 signature: %s covers %q problems: %s", r.Status, r.Signature.Covers, kinds(r))
	}
}

func TestChangedPayloadIsPinpointed(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	fs[3].Payload[2] = 'S' // "Q select x" → "Q Select x"
	onlyProblem(t, run(t, b, fs, Options{}), ProblemDigest, 3)
}

func TestChangedHeaderIsPinpointed(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	fs[4].TS = fs[4].TS.Add(time.Hour)
	onlyProblem(t, run(t, b, fs, Options{}), ProblemHash, 4)
}

// A forger who alters a frame and re-seals it gets a consistent frame, but the next
// frame's prev_hash no longer matches.
func TestResealedFrameBreaksTheNextLink(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	fs[5].Payload = []byte("Q drop table audit")
	if err := schemas.Seal(&fs[5], fs[4].Hash); err != nil {
		t.Fatal(err)
	}
	onlyProblem(t, run(t, b, fs, Options{}), ProblemPrevHash, 6)
}

func TestDeletedFrameIsAGap(t *testing.T) {
	b := session()
	fs := slices.Delete(clone(b.Frames), 4, 5)
	r := run(t, b, fs, Options{})
	onlyProblem(t, r, ProblemGap, 4)
	if r.Problems[0].SeqEnd != 4 {
		t.Errorf("gap %+v", r.Problems[0])
	}
}

func TestDeletedLastFrameBreaksTheEnd(t *testing.T) {
	b := session()
	n := len(b.Frames)
	fs := slices.Delete(clone(b.Frames), n-2, n-1)
	r := run(t, b, fs, Options{})
	got := kinds(r)
	if !strings.Contains(got, "gap") || !strings.Contains(got, "final_hash is not the hash") {
		t.Errorf("problems: %s", got)
	}
}

func TestTruncatedSessionIsIncomplete(t *testing.T) {
	b := session()
	r := run(t, b, b.Frames[:5], Options{})
	if r.OK || r.Status != StatusIncomplete || len(r.Problems) != 0 || r.Signature.Status != SigMissing {
		t.Errorf("truncated: %s ok=%v sig=%s problems: %s", r.Status, r.OK, r.Signature.Status, kinds(r))
	}
}

// forgeEnd rewrites session.end to claim the session ended one frame earlier (hiding
// the last frame), re-sealing the end frame so the chain itself stays consistent.
func forgeEnd(t *testing.T, b *sessiontest.Builder, key ed25519.PrivateKey) []schemas.Frame {
	t.Helper()
	fs := clone(b.Frames)
	n := len(fs)
	end := fs[n-1]
	e := *end.End
	e.Reason = "client closed"
	e.LastSeq, e.FinalHash = fs[n-3].Seq, fs[n-3].Hash
	if key != nil {
		if err := schemas.SignEnd(key, b.ID, &e); err != nil {
			t.Fatal(err)
		}
	}
	end.End = &e
	end.Payload, _ = json.Marshal(e)
	end.Seq, end.TS = fs[n-2].Seq, fs[n-2].TS
	if err := schemas.Seal(&end, fs[n-3].Hash); err != nil {
		t.Fatal(err)
	}
	return append(fs[:n-2], end)
}

func TestForgedEndWithoutTheKeyFails(t *testing.T) {
	b := session()
	r := run(t, b, forgeEnd(t, b, nil), Options{})
	onlyProblem(t, r, ProblemSignature, int64(len(b.Frames)-2))
	if r.Signature.Status != SigInvalid {
		t.Errorf("signature %s", r.Signature.Status)
	}
}

func TestForgedEndWithAnotherKey(t *testing.T) {
	b := session()
	_, other, _ := ed25519.GenerateKey(nil)
	fs := forgeEnd(t, b, other)
	// Without trusted keys the report can only say "consistent, by an unknown key".
	r := run(t, b, fs, Options{})
	if r.Signature.Status != SigUntrustedConsistent || r.Signature.Key == "" {
		t.Errorf("signature %+v", r.Signature)
	}
	r = run(t, b, fs, Options{TrustedKeys: []ed25519.PublicKey{b.Key.Public().(ed25519.PublicKey)}})
	onlyProblem(t, r, ProblemSignature, int64(len(b.Frames)-2))
	if r.Signature.Status != SigUntrustedKey {
		t.Errorf("signature %s", r.Signature.Status)
	}
}

func TestTypedStartMustMatchPayload(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	st := *fs[0].Start
	st.Subject = "mallory"
	fs[0].Start = &st
	onlyProblem(t, run(t, b, fs, Options{}), ProblemStart, 0)
}

func TestTypedEndMustMatchPayload(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	n := len(fs)
	e := *fs[n-1].End
	e.Reason = "normal"
	fs[n-1].End = &e
	onlyProblem(t, run(t, b, fs, Options{}), ProblemEnd, int64(n-1))
}

func TestDuplicateRowsAndReordering(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	dup := slices.Insert(slices.Clone(fs), 3, fs[2])
	if r := run(t, b, dup, trust(b)); !r.OK {
		t.Errorf("an identical duplicate row is a storage artefact, not tampering: %s", kinds(r))
	}
	other := fs[2]
	other.Payload = []byte("Q something else")
	if err := schemas.Seal(&other, fs[1].Hash); err != nil {
		t.Fatal(err)
	}
	r := run(t, b, slices.Insert(slices.Clone(fs), 3, other), Options{})
	onlyProblem(t, r, ProblemDuplicate, 2)
}

// mask masks fs[i] as a processor does, signing with key (unsigned when nil).
func mask(t *testing.T, fs []schemas.Frame, i int, key ed25519.PrivateKey) {
	t.Helper()
	fs[i].Payload = []byte("Q select ***")
	fs[i].PayloadSalt = nil
	fs[i].Masks = map[string]int64{"email": 1}
	if key == nil {
		return
	}
	if err := schemas.SignMasked(key, &fs[i]); err != nil {
		t.Fatal(err)
	}
}

func TestMaskedFramesAreCountedNotFailed(t *testing.T) {
	b := session()
	_, proc, _ := ed25519.GenerateKey(nil)
	fs := clone(b.Frames)
	mask(t, fs, 3, proc)
	r := run(t, b, fs, trust(b, proc))
	if !r.OK || r.Masked != 1 || r.MaskedSigs.Status != MaskedTrusted {
		t.Errorf("masked frame: %s masked=%d %+v problems: %s", r.Status, r.Masked, r.MaskedSigs, kinds(r))
	}
	// Gateway key trusted, processor key not configured: untrusted, not ok.
	if r := run(t, b, fs, trust(b)); r.OK || r.Status != StatusUntrusted || r.MaskedSigs.Status != MaskedUntrusted {
		t.Errorf("no trusted processor keys: %s %+v problems: %s", r.Status, r.MaskedSigs, kinds(r))
	}
	fs[3].Masks = nil
	onlyProblem(t, run(t, b, fs, trust(b, proc)), ProblemSalt, 3)
}

// Whoever can write the store replaces a masked payload (or the mask counts): the
// chain does not cover a masked payload, so before processors signed what they
// masked this verified as ok.
func TestReplacedMaskedPayloadFails(t *testing.T) {
	b := session()
	_, proc, _ := ed25519.GenerateKey(nil)
	_, attacker, _ := ed25519.GenerateKey(nil)
	for name, tamper := range map[string]func(f *schemas.Frame){
		"payload":  func(f *schemas.Frame) { f.Payload = []byte("Q select 'innocent'") },
		"masks":    func(f *schemas.Frame) { f.Masks = map[string]int64{"email": 2} },
		"unsigned": func(f *schemas.Frame) { f.ProcessorSig = nil },
		"resigned": func(f *schemas.Frame) {
			f.Payload = []byte("Q select 'innocent'")
			_ = schemas.SignMasked(attacker, f)
		},
	} {
		fs := clone(b.Frames)
		mask(t, fs, 3, proc)
		tamper(&fs[3])
		r := run(t, b, fs, trust(b, proc))
		onlyProblem(t, r, ProblemMasked, 3)
		if r.MaskedSigs.Status != MaskedFailed {
			t.Errorf("%s: masked signatures %s", name, r.MaskedSigs.Status)
		}
	}
	// A payload stripped of its salt and marked masked without any signature fails
	// too: the frame was never masked by a processor.
	fs := clone(b.Frames)
	mask(t, fs, 5, nil)
	onlyProblem(t, run(t, b, fs, trust(b, proc)), ProblemMasked, 5)
}

func TestProblemsAreCapped(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	for i := 1; i < len(fs)-1; i++ {
		fs[i].Payload = []byte("tampered")
	}
	r := run(t, b, fs, Options{MaxProblems: 3})
	if len(r.Problems) != 3 || r.ProblemsOmitted != int64(len(fs)-2-3) {
		t.Errorf("%d problems listed, %d omitted", len(r.Problems), r.ProblemsOmitted)
	}
}

func TestDeniedSessionVerifies(t *testing.T) {
	b := sessiontest.NewDenied(schemas.SSH, schemas.SessionStart{Subject: "mallory", Target: "box"}, "not in group ops")
	r := run(t, b, b.Frames, trust(b))
	if !r.OK || r.Frames != 2 || r.EndReason != "denied: not in group ops" {
		t.Errorf("denied session: %s %+v problems: %s", r.Status, r, kinds(r))
	}
	fs := clone(b.Frames)
	fs[0].Denial = "something else"
	onlyProblem(t, run(t, b, fs, Options{}), ProblemStart, 0)
}

// A frame the processors withheld (payload dropped, masks {withheld: 1}) keeps the
// session verifiable, and the report names it.
func TestWithheldFrameVerifiesAndIsNamed(t *testing.T) {
	b := session()
	fs := clone(b.Frames)
	fs[3].Payload, fs[3].PayloadSalt, fs[3].Masks = nil, nil, map[string]int64{schemas.MaskWithheld: 1}
	_, proc, _ := ed25519.GenerateKey(nil)
	if err := schemas.SignMasked(proc, &fs[3]); err != nil {
		t.Fatal(err)
	}
	r := run(t, b, fs, trust(b, proc))
	if !r.OK || len(r.Problems) != 0 || !slices.Equal(r.Withheld, []int64{3}) || r.Masked != 1 {
		t.Fatalf("report %+v, problems %s", r, kinds(r))
	}
}
