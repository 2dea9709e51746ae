// Package integrity checks a session's frames as they stream past: every seq follows
// the previous one, every frame chains to the previous frame's hash and its payload
// matches its digest, the session starts with a lifecycle frame, and the session.end
// names the real tip and carries a valid signature from a trusted gateway key. A
// problem becomes an Alert; nothing is dropped silently.
package integrity

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/tapline/tapline/schemas/chaincheck"

	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/schemas"
)

// Alert kinds: the chain problems (chaincheck's kinds, the ones verify reports),
// and what only the processors see.
const (
	Gap        = chaincheck.Gap        // frames are missing before this one
	OutOfOrder = chaincheck.OutOfOrder // a seq at or below one already seen: not processed further
	PrevHash   = chaincheck.PrevHash   // the frame does not chain to the previous frame's hash
	Hash       = chaincheck.Hash       // its hash does not match its header and digest
	Digest     = chaincheck.Digest     // its payload does not match its digest
	Salt       = chaincheck.Salt       // salt missing on a frame not marked masked
	Unreadable = chaincheck.Unreadable // the frame cannot be hashed
	Start      = chaincheck.Start      // seq 0 is not session.start or session.denied
	End        = chaincheck.End        // session.end names another last seq or final hash than the stream, or has no end record
	Signature  = chaincheck.Signature  // session.end's signature does not verify, or is by an untrusted key
	AfterEnd   = chaincheck.AfterEnd   // a frame arrived after the session ended

	Undecodable    = "undecodable"     // a raw record is not a frame
	DeniedActivity = "denied_activity" // a denied session carries protocol frames
	// ProcessingFailed: the processors failed on this frame (a bug, not an attack as
	// such); its payload was withheld and the raw record dead-lettered.
	ProcessingFailed = "processing_failed"
)

// Alert is one integrity problem found in a session's stream.
type Alert struct {
	Kind   string
	Seq    int64
	Detail string
}

func (a Alert) String() string { return fmt.Sprintf("%s at seq %d: %s", a.Kind, a.Seq, a.Detail) }

// Tip is where a session's verified stream stands.
type Tip struct {
	Seq   int64  `json:"seq"` // last seq accepted, -1 before the first frame
	Hash  []byte `json:"hash,omitempty"`
	Ended bool   `json:"ended,omitempty"`
}

// NewTip is the tip of a session not seen yet.
func NewTip() Tip { return Tip{Seq: -1} }

// Keys is the set of gateway public keys trusted to sign session ends. Empty trusts
// none: a signature is still checked against its embedded key (and an invalid one
// alerted), but the session's signature_ok is false, since anyone can sign with a
// key of their own.
type Keys [][]byte

// ParseKeys reads Ed25519 public keys given as base64, hex, or a key file (PEM
// public key, or the gateway's own key file), as keyfile.ParsePublic does.
func ParseKeys(list []string) (Keys, error) {
	var out Keys
	for _, s := range list {
		k, err := keyfile.ParsePublic(s)
		if err != nil {
			return nil, fmt.Errorf("trusted gateway key: %w", err)
		}
		out = append(out, k)
	}
	return out, nil
}

func (ks Keys) trusted(k []byte) bool {
	for _, t := range ks {
		if bytes.Equal(t, k) {
			return true
		}
	}
	return false
}

// Check verifies f against the tip and advances it, by the rules of chaincheck.
// accept is false for a frame that must not be processed further (a replayed seq):
// its alert is the only trace. signatureOK is set for a session.end frame.
func Check(t *Tip, f *schemas.Frame, keys Keys) (alerts []Alert, accept bool, signatureOK *bool) {
	add := func(ps ...chaincheck.Problem) {
		for _, p := range ps {
			if p.Kind == Gap {
				p.Detail = fmt.Sprintf("seqs %d..%d missing", p.Seq, p.SeqEnd)
			}
			alerts = append(alerts, Alert{Kind: p.Kind, Seq: f.Seq, Detail: p.Detail})
		}
	}
	if f.Seq <= t.Seq {
		add(chaincheck.Problem{Kind: OutOfOrder, Detail: fmt.Sprintf("seq %d arrived after seq %d; not processed", f.Seq, t.Seq)})
		return alerts, false, nil
	}
	if t.Ended {
		add(chaincheck.Problem{Kind: AfterEnd, Detail: fmt.Sprintf("%s frame after the session's end", f.Kind)})
	}
	linked := f.Seq == 0 || f.Seq == t.Seq+1
	if !linked {
		add(chaincheck.GapProblem(t.Seq+1, f.Seq-1))
	}
	prev := t.Hash
	if f.Seq == 0 {
		prev = schemas.ZeroHash
	}
	add(chaincheck.Link(f, prev, t.Seq, linked)...)
	add(chaincheck.StartRule(f)...)
	if f.Kind == schemas.KindSessionEnd {
		ok := checkEnd(t, f, keys, add)
		signatureOK = &ok
		t.Ended = true
	}
	t.Seq, t.Hash = f.Seq, append([]byte(nil), f.Hash...)
	return alerts, true, signatureOK
}

// checkEnd verifies a session.end against the tip before it; it returns whether the
// signature is valid and by a trusted key.
func checkEnd(t *Tip, f *schemas.Frame, keys Keys, add func(...chaincheck.Problem)) bool {
	tip := t.Hash
	if t.Seq != f.Seq-1 {
		tip = nil // frames missing before the end: its final hash cannot match
	}
	add(chaincheck.EndTip(f, f.End, tip)...)
	if f.End == nil {
		return false
	}
	trusted := make([]ed25519.PublicKey, len(keys))
	for i, k := range keys {
		trusted[i] = k
	}
	status, _, ps := chaincheck.EndSignature(f.SessionID, f, f.End, trusted)
	add(ps...)
	// With no trusted keys there is no alert per session: the processor warns once
	// at start.
	return status == chaincheck.SigTrusted
}
