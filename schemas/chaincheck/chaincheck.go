// Package chaincheck holds the rules a session's hash chain is checked by, and the
// one vocabulary of problems they find. The processors check each frame as it
// streams past (processors/integrity, whose alerts carry these kinds) and verify
// checks a stored session (query/verify, whose report carries them); both apply the
// rules here, so they cannot disagree about what is wrong or what it is called.
package chaincheck

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/tapline/tapline/schemas"
)

// Problem kinds.
const (
	Gap        = "gap"          // seq numbers missing: frames deleted, lost or never stored
	Duplicate  = "duplicate"    // a second, different frame with a seq already seen
	OutOfOrder = "out_of_order" // a seq at or below one already seen
	SessionID  = "session_id"   // a frame of another session
	PrevHash   = "prev_hash"    // does not chain to the previous frame
	Hash       = "hash"         // header fields or digest altered
	Digest     = "digest"       // payload altered
	Salt       = "salt"         // salt missing on a frame not marked masked
	Unreadable = "unreadable"   // the frame could not be hashed at all
	Start      = "start"        // seq 0 is not session.start/denied, or a start frame elsewhere
	End        = "end"          // session.end inconsistent with the chain, or without its end record
	Signature  = "signature"    // session.end signature invalid or by an untrusted key
	AfterEnd   = "after_end"    // frames after session.end
	Masked     = "masked"       // masked frame without a valid processor signature, or by an untrusted key
	Fragment   = "fragment"     // a fragment run out of order, or not finished
)

// Problem is one thing wrong, at a seq (a gap spans Seq..SeqEnd).
type Problem struct {
	Kind   string `json:"kind"`
	Seq    int64  `json:"seq"`
	SeqEnd int64  `json:"seq_end,omitempty"`
	Detail string `json:"detail"`
}

func (p Problem) String() string {
	if p.SeqEnd > p.Seq {
		return fmt.Sprintf("seq %d..%d: %s: %s", p.Seq, p.SeqEnd, p.Kind, p.Detail)
	}
	return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Detail)
}

func problem(kind string, seq int64, format string, args ...any) Problem {
	return Problem{Kind: kind, Seq: seq, Detail: fmt.Sprintf(format, args...)}
}

// GapProblem reports seqs from..to missing.
func GapProblem(from, to int64) Problem {
	return Problem{Kind: Gap, Seq: from, SeqEnd: to, Detail: fmt.Sprintf("%d frame(s) missing", to-from+1)}
}

// Link checks f's place in the chain after the frame prevSeq whose hash is prev.
// After a gap (linked false) the previous hash is unknown, so only the frame's own
// hash and digest are checked. It says which part failed.
func Link(f *schemas.Frame, prev []byte, prevSeq int64, linked bool) []Problem {
	if !linked {
		prev = f.PrevHash
	}
	if schemas.CheckLink(f, prev) == nil {
		return nil
	}
	var out []Problem
	if !bytes.Equal(f.PrevHash, prev) {
		out = append(out, problem(PrevHash, f.Seq, "prev_hash does not match the hash of seq %d: a frame was altered, removed or inserted between them", prevSeq))
	}
	h, err := schemas.ChainHash(f)
	switch {
	case err != nil:
		return append(out, problem(Unreadable, f.Seq, "cannot hash the frame: %v", err))
	case !bytes.Equal(h, f.Hash):
		out = append(out, problem(Hash, f.Seq, "hash does not match the frame's header and payload digest: %s frame altered", f.Kind))
	}
	switch {
	case len(f.PayloadSalt) == 0 && len(f.Masks) == 0:
		out = append(out, problem(Salt, f.Seq, "payload salt missing on a frame not marked as masked"))
	case len(f.PayloadSalt) > 0 && !bytes.Equal(schemas.PayloadDigest(f.PayloadSalt, f.Payload), f.PayloadDigest):
		out = append(out, problem(Digest, f.Seq, "payload does not match its digest: %s payload altered", f.Kind))
	}
	return out
}

// StartRule checks that session.start or session.denied is at seq 0, and only there.
func StartRule(f *schemas.Frame) []Problem {
	isStart := f.Kind == schemas.KindSessionStart || f.Kind == schemas.KindSessionDenied
	switch {
	case f.Seq == 0 && !isStart:
		return []Problem{problem(Start, 0, "seq 0 is %s, not session.start or session.denied", f.Kind)}
	case f.Seq != 0 && isStart:
		return []Problem{problem(Start, f.Seq, "%s at seq %d; it belongs at seq 0", f.Kind, f.Seq)}
	}
	return nil
}

// EndTip checks a session.end's record against the chain before it: the last seq
// and the final hash (tipHash, the hash of seq f.Seq-1).
func EndTip(f *schemas.Frame, e *schemas.SessionEnd, tipHash []byte) []Problem {
	if e == nil {
		return []Problem{problem(End, f.Seq, "session.end frame carries no end record")}
	}
	var out []Problem
	if e.LastSeq != f.Seq-1 {
		out = append(out, problem(End, f.Seq, "session.end says the last frame is seq %d, but it follows seq %d", e.LastSeq, f.Seq-1))
	}
	if !bytes.Equal(e.FinalHash, tipHash) {
		out = append(out, problem(End, f.Seq, "session.end final_hash is not the hash of seq %d", f.Seq-1))
	}
	return out
}

// Signature statuses of a session.end.
const (
	SigTrusted             = "trusted"              // valid, by a trusted gateway key
	SigUntrustedConsistent = "untrusted-consistent" // valid under the embedded key; no trusted keys configured
	SigUntrustedKey        = "untrusted-key"        // valid under a key that is not among the trusted ones
	SigInvalid             = "invalid"              // does not verify
)

// EndSignature checks the session.end of session sessionID's signature with the key it embeds, then that
// key against the trusted ones (none configured: consistent but untrusted, no
// problem). version is what the signature covers.
func EndSignature(sessionID string, f *schemas.Frame, e *schemas.SessionEnd, trusted []ed25519.PublicKey) (status string, version int, p []Problem) {
	version, err := schemas.EndSignatureVersion(ed25519.PublicKey(e.GatewayKey), sessionID, e)
	if err != nil {
		return SigInvalid, version, []Problem{problem(Signature, f.Seq, "%v: the end record (reason, counts, last seq, final hash) was not signed by its embedded gateway key", err)}
	}
	if len(trusted) == 0 {
		return SigUntrustedConsistent, version, nil
	}
	// The signature verified under the embedded key above; a trusted key with the
	// same bytes would verify it again, at the same cost, to the same answer.
	if !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return bytes.Equal(k, e.GatewayKey) }) {
		return SigUntrustedKey, version, []Problem{problem(Signature, f.Seq, "signed by gateway key %x, which is not a trusted gateway key", []byte(e.GatewayKey))}
	}
	return SigTrusted, version, nil
}
