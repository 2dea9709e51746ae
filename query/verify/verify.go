// Package verify proves a stored session complete and unaltered, or says exactly
// what is wrong and where: it recomputes the hash chain from the stored frames,
// checks that seq runs from 0 without gaps, that unmasked payloads match their
// digests, that masked frames carry a valid processor signature over what masking
// left, that the lifecycle frames agree with their payloads, and that session.end
// points at the last frame and carries a valid gateway signature over the whole end
// record.
//
// A signature proves who wrote the evidence only when its key is trusted: with no
// trusted keys configured a session that is otherwise intact reports "untrusted",
// never "ok" (docs/security.md).
//
// It reads frames as a stream in seq order and holds only the previous frame's hash
// and open fragment runs, so a session of any size verifies in constant memory.
package verify

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/tapline/tapline/schemas/chaincheck"

	"github.com/tapline/tapline/schemas"
)

// DefaultMaxProblems bounds the problems listed; the rest are only counted.
const DefaultMaxProblems = 1000

// Options configure verification.
type Options struct {
	// TrustedKeys are the gateways' Ed25519 public keys. With none configured a
	// signature is checked against the key embedded in session.end, which proves the
	// end record consistent but not who wrote it: the report says "untrusted".
	TrustedKeys []ed25519.PublicKey
	// TrustedProcessorKeys are the processors' keys, which sign masked frames; the
	// same rule applies to sessions with masked frames.
	TrustedProcessorKeys []ed25519.PublicKey
	MaxProblems          int
}

// Report statuses.
const (
	StatusOK         = "ok"         // chain intact from seq 0 to a session.end signed by a trusted key
	StatusUntrusted  = "untrusted"  // intact and self-consistent, but no trusted key to check signatures against
	StatusIncomplete = "incomplete" // intact so far, but no session.end: live, or cut short
	StatusFailed     = "failed"     // see Problems
)

// Signature statuses.
const (
	SigTrusted             = chaincheck.SigTrusted             // valid, by a configured gateway key
	SigUntrustedConsistent = chaincheck.SigUntrustedConsistent // valid under the embedded key; no trusted keys configured
	SigUntrustedKey        = chaincheck.SigUntrustedKey        // valid under a key that is not among the trusted ones
	SigInvalid             = chaincheck.SigInvalid             // does not verify
	SigMissing             = "missing"                         // no session.end
)

// Problem kinds: chaincheck's, the one vocabulary integrity alerts use too.
const (
	ProblemGap        = chaincheck.Gap
	ProblemDuplicate  = chaincheck.Duplicate
	ProblemOrder      = chaincheck.OutOfOrder
	ProblemSessionID  = chaincheck.SessionID
	ProblemPrevHash   = chaincheck.PrevHash
	ProblemHash       = chaincheck.Hash
	ProblemDigest     = chaincheck.Digest
	ProblemSalt       = chaincheck.Salt
	ProblemStart      = chaincheck.Start
	ProblemEnd        = chaincheck.End
	ProblemSignature  = chaincheck.Signature
	ProblemMasked     = chaincheck.Masked
	ProblemAfterEnd   = chaincheck.AfterEnd
	ProblemFragment   = chaincheck.Fragment
	ProblemUnreadable = chaincheck.Unreadable
)

// Problem is one thing wrong, at a seq (a gap spans Seq..SeqEnd).
type Problem = chaincheck.Problem

// Signature describes the session.end signature check.
type Signature struct {
	Status string `json:"status"`
	Key    string `json:"key,omitempty"` // hex of the key embedded in session.end
	// Covers is what the signature covers: "end-record" (the whole end record), or
	// "tip" for recordings made before frame schema v2 (last seq and final hash only:
	// their end reason and byte counts are not signed).
	Covers string `json:"covers,omitempty"`
}

// Masked-frame signature statuses (MaskedSignatures.Status).
const (
	MaskedNone      = "none"      // no masked frames
	MaskedTrusted   = "trusted"   // every masked frame signed by a configured processor key
	MaskedUntrusted = "untrusted" // signatures valid under their embedded keys; no trusted processor keys configured
	MaskedFailed    = "failed"    // see problems of kind "masked"
)

// MaskedSignatures describes the processor signatures on masked frames.
type MaskedSignatures struct {
	Status string   `json:"status"`
	Keys   []string `json:"keys,omitempty"` // hex of the processor keys seen
}

// Report is the outcome of verifying one session.
type Report struct {
	SessionID string `json:"session_id"`
	OK        bool   `json:"ok"`
	Status    string `json:"status"`
	Frames    int64  `json:"frames"`   // frames read (exact duplicates not counted)
	LastSeq   int64  `json:"last_seq"` // -1 when there are none
	FinalHash string `json:"final_hash,omitempty"`
	Ended     bool   `json:"ended"`
	EndReason string `json:"end_reason,omitempty"`
	Masked    int64  `json:"masked_frames"` // chain checked, payload digest not (masked)
	// Withheld are the seqs (the first 100) of frames whose payload the processors
	// withheld because they failed on it: the chain holds, the payload is not stored.
	Withheld        []int64          `json:"withheld_seqs,omitempty"`
	Signature       Signature        `json:"signature"`
	MaskedSigs      MaskedSignatures `json:"masked_signatures"`
	Problems        []Problem        `json:"problems"`
	ProblemsOmitted int64            `json:"problems_omitted,omitempty"`
}

type fragKey struct {
	dir     schemas.Direction
	channel int64
	kind    string
}

type checker struct {
	opt    Options
	r      Report
	next   int64  // seq expected next
	prev   []byte // hash of the last frame in the chain
	end    *schemas.Frame
	frags  map[fragKey]int32
	lastOK *schemas.Frame // last frame read, for duplicate detection
	// maskedBad and maskedUntrusted count masked frames whose signature failed, and
	// those valid only under their embedded key (no trusted processor keys).
	maskedBad, maskedUntrusted int64
}

// Session verifies one session's frames, read in seq order.
func Session(sessionID string, frames iter.Seq2[schemas.Frame, error], opt Options) (Report, error) {
	if opt.MaxProblems <= 0 {
		opt.MaxProblems = DefaultMaxProblems
	}
	c := &checker{opt: opt, prev: schemas.ZeroHash, frags: map[fragKey]int32{}}
	c.r = Report{SessionID: sessionID, LastSeq: -1, Problems: []Problem{}, Signature: Signature{Status: SigMissing}}
	for f, err := range frames {
		if err != nil {
			return Report{}, err
		}
		c.frame(&f)
	}
	c.finish()
	return c.r, nil
}

func (c *checker) problem(kind string, seq int64, format string, args ...any) {
	if len(c.r.Problems) >= c.opt.MaxProblems {
		c.r.ProblemsOmitted++
		return
	}
	c.r.Problems = append(c.r.Problems, Problem{Kind: kind, Seq: seq, Detail: fmt.Sprintf(format, args...)})
}

func (c *checker) frame(f *schemas.Frame) {
	if f.Seq < c.next {
		c.replayed(f)
		return
	}
	c.r.Frames++
	if f.SessionID != c.r.SessionID {
		c.problem(ProblemSessionID, f.Seq, "frame belongs to session %s", f.SessionID)
	}
	linked := true
	if f.Seq > c.next {
		c.gap(c.next, f.Seq-1)
		linked = false
	}
	if c.end != nil {
		c.problem(ProblemAfterEnd, f.Seq, "frame %s recorded after session.end (seq %d)", f.Kind, c.end.Seq)
	}
	c.link(f, linked)
	c.fragment(f)
	c.lifecycle(f)
	c.next = f.Seq + 1
	c.prev = f.Hash
	c.lastOK = f
	c.r.LastSeq = f.Seq
	c.r.FinalHash = hex.EncodeToString(f.Hash)
	if len(f.PayloadSalt) == 0 && len(f.Masks) > 0 {
		c.r.Masked++
		if f.Masks[schemas.MaskWithheld] > 0 && len(c.r.Withheld) < 100 {
			c.r.Withheld = append(c.r.Withheld, f.Seq)
		}
		c.masked(f)
	}
}

// masked checks the processor signature that vouches for a masked payload, which
// the chain no longer covers (masking dropped the salt).
func (c *checker) masked(f *schemas.Frame) {
	p := f.ProcessorSig
	if p == nil {
		c.maskedBad++
		c.problem(ProblemMasked, f.Seq, "masked %s frame carries no processor signature: its payload cannot be checked", f.Kind)
		return
	}
	key := hex.EncodeToString(p.Key)
	if !slices.Contains(c.r.MaskedSigs.Keys, key) && len(c.r.MaskedSigs.Keys) < 8 {
		c.r.MaskedSigs.Keys = append(c.r.MaskedSigs.Keys, key)
	}
	if err := schemas.VerifyMasked(p.Key, f); err != nil {
		c.maskedBad++
		c.problem(ProblemMasked, f.Seq, "%v: masked %s payload or mask counts altered after masking", err, f.Kind)
		return
	}
	if len(c.opt.TrustedProcessorKeys) == 0 {
		c.maskedUntrusted++
		return
	}
	if !slices.ContainsFunc(c.opt.TrustedProcessorKeys, func(k ed25519.PublicKey) bool { return bytes.Equal(k, p.Key) }) {
		c.maskedBad++
		c.problem(ProblemMasked, f.Seq, "masked %s frame signed by processor key %s, which is not a trusted processor key", f.Kind, key)
	}
}

// replayed handles a seq already seen: the same frame stored twice (a sink retry
// before deduplication) is harmless; anything else is not.
func (c *checker) replayed(f *schemas.Frame) {
	if c.lastOK != nil && f.Seq == c.lastOK.Seq {
		if !bytes.Equal(f.Hash, c.lastOK.Hash) {
			c.problem(ProblemDuplicate, f.Seq, "two different frames with this seq (hashes %x… and %x…)", short(c.lastOK.Hash), short(f.Hash))
		}
		return
	}
	c.problem(ProblemOrder, f.Seq, "read after seq %d", c.next-1)
}

func short(h []byte) []byte { return h[:min(len(h), 6)] }

func (c *checker) gap(from, to int64) { c.add(chaincheck.GapProblem(from, to)) }

// add records problems, up to MaxProblems.
func (c *checker) add(ps ...Problem) {
	for _, p := range ps {
		if len(c.r.Problems) >= c.opt.MaxProblems {
			c.r.ProblemsOmitted++
			continue
		}
		c.r.Problems = append(c.r.Problems, p)
	}
}

// link checks the frame's place in the chain.
func (c *checker) link(f *schemas.Frame, linked bool) {
	c.add(chaincheck.Link(f, c.prev, c.next-1, linked)...)
}

func (c *checker) fragment(f *schemas.Frame) {
	k := fragKey{f.Direction, f.Channel, f.Kind}
	want := c.frags[k]
	if f.Fragment != want {
		c.problem(ProblemFragment, f.Seq, "%s fragment %d where %d was expected", f.Kind, f.Fragment, want)
	}
	if f.Final {
		delete(c.frags, k)
	} else {
		c.frags[k] = f.Fragment + 1
	}
}

func (c *checker) lifecycle(f *schemas.Frame) {
	c.add(chaincheck.StartRule(f)...)
	switch f.Kind {
	case schemas.KindSessionStart, schemas.KindSessionDenied:
		if d := startMismatch(f); d != "" {
			c.problem(ProblemStart, f.Seq, "%s", d)
		}
	case schemas.KindSessionEnd:
		c.sessionEnd(f)
	}
}

func (c *checker) sessionEnd(f *schemas.Frame) {
	if c.end != nil {
		c.problem(ProblemEnd, f.Seq, "second session.end (first at seq %d)", c.end.Seq)
		return
	}
	c.end = f
	c.r.Ended = true
	e, d := endRecord(f)
	if d != "" {
		c.problem(ProblemEnd, f.Seq, "%s", d)
	}
	if e == nil {
		c.r.Signature.Status = SigInvalid
		return
	}
	c.r.EndReason = e.Reason
	c.add(chaincheck.EndTip(f, e, c.prev)...)
	c.signature(f, e)
}

func (c *checker) signature(f *schemas.Frame, e *schemas.SessionEnd) {
	c.r.Signature.Key = hex.EncodeToString(e.GatewayKey)
	status, version, ps := chaincheck.EndSignature(c.r.SessionID, f, e, c.opt.TrustedKeys)
	c.r.Signature.Status = status
	c.add(ps...)
	if status == SigInvalid {
		return
	}
	c.r.Signature.Covers = "end-record"
	if version == schemas.EndSigTip {
		c.r.Signature.Covers = "tip"
	}
}

func (c *checker) finish() {
	switch {
	case c.r.Masked == 0:
		c.r.MaskedSigs.Status = MaskedNone
	case c.maskedBad > 0:
		c.r.MaskedSigs.Status = MaskedFailed
	case c.maskedUntrusted > 0:
		c.r.MaskedSigs.Status = MaskedUntrusted
	default:
		c.r.MaskedSigs.Status = MaskedTrusted
	}
	open := slices.SortedFunc(maps.Keys(c.frags), func(a, b fragKey) int {
		return cmp.Or(cmp.Compare(a.dir, b.dir), cmp.Compare(a.channel, b.channel), cmp.Compare(a.kind, b.kind))
	})
	for _, k := range open {
		c.problem(ProblemFragment, c.r.LastSeq, "%s %s on channel %d stops at fragment %d without a final fragment", k.dir, k.kind, k.channel, c.frags[k]-1)
	}
	switch {
	case len(c.r.Problems) > 0 || c.r.ProblemsOmitted > 0:
		c.r.Status = StatusFailed
	case !c.r.Ended:
		c.r.Status = StatusIncomplete
	case c.r.Signature.Status != SigTrusted || c.maskedUntrusted > 0:
		c.r.Status = StatusUntrusted
	default:
		c.r.Status = StatusOK
		c.r.OK = true
	}
}
