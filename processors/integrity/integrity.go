// Package integrity checks a session's frames as they stream past: every seq follows
// the previous one, every frame chains to the previous frame's hash and its payload
// matches its digest, the session starts with a lifecycle frame, and the session.end
// names the real tip and carries a valid signature from a trusted gateway key. A
// problem becomes an Alert; nothing is dropped silently.
package integrity

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/schemas"
)

// Alert kinds.
const (
	SeqGap         = "seq_gap"         // frames are missing before this one
	SeqReplay      = "seq_replay"      // a seq at or below one already seen: not processed further
	ChainBreak     = "chain_break"     // the frame does not chain to the previous hash, or its hash or digest is wrong
	BadStart       = "bad_start"       // seq 0 is not session.start or session.denied
	EndMismatch    = "end_mismatch"    // session.end names another last seq or final hash than the stream has
	BadSignature   = "bad_signature"   // session.end's signature does not verify
	UntrustedKey   = "untrusted_key"   // session.end is signed by a key not in the trusted list
	MissingEnd     = "missing_end"     // session.end frame without its end record
	FrameAfterEnd  = "frame_after_end" // a frame arrived after the session ended
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

// Check verifies f against the tip and advances it. accept is false for a frame that
// must not be processed further (a replayed seq): its alert is the only trace.
// signatureOK is set for a session.end frame.
func Check(t *Tip, f *schemas.Frame, keys Keys) (alerts []Alert, accept bool, signatureOK *bool) {
	alert := func(kind, format string, args ...any) {
		alerts = append(alerts, Alert{Kind: kind, Seq: f.Seq, Detail: fmt.Sprintf(format, args...)})
	}
	if f.Seq <= t.Seq {
		alert(SeqReplay, "seq %d arrived after seq %d; not processed", f.Seq, t.Seq)
		return alerts, false, nil
	}
	if t.Ended {
		alert(FrameAfterEnd, "%s frame after the session's end", f.Kind)
	}
	prev := t.Hash
	switch {
	case f.Seq == t.Seq+1 && t.Seq >= 0:
	case f.Seq == 0:
		prev = schemas.ZeroHash
	case t.Seq < 0:
		alert(SeqGap, "first frame seen has seq %d: seqs 0..%d missing", f.Seq, f.Seq-1)
		prev = f.PrevHash
	default:
		alert(SeqGap, "seqs %d..%d missing", t.Seq+1, f.Seq-1)
		prev = f.PrevHash // cannot link across the gap; check the frame on its own
	}
	if err := schemas.CheckLink(f, prev); err != nil {
		alert(ChainBreak, "%v", err)
	}
	if f.Seq == 0 && f.Kind != schemas.KindSessionStart && f.Kind != schemas.KindSessionDenied {
		alert(BadStart, "seq 0 is %s, not %s or %s", f.Kind, schemas.KindSessionStart, schemas.KindSessionDenied)
	}
	if f.Kind == schemas.KindSessionEnd {
		ok := checkEnd(t, f, keys, alert)
		signatureOK = &ok
		t.Ended = true
	}
	t.Seq, t.Hash = f.Seq, append([]byte(nil), f.Hash...)
	return alerts, true, signatureOK
}

// checkEnd verifies a session.end against the tip before it; it returns whether the
// signature is valid and by a trusted key.
func checkEnd(t *Tip, f *schemas.Frame, keys Keys, alert func(kind, format string, args ...any)) bool {
	e := f.End
	if e == nil {
		alert(MissingEnd, "session.end frame carries no end record")
		return false
	}
	if e.LastSeq != f.Seq-1 || e.LastSeq != t.Seq {
		alert(EndMismatch, "session.end says last seq %d; the stream has %d before it", e.LastSeq, t.Seq)
	} else if !bytes.Equal(e.FinalHash, t.Hash) {
		alert(EndMismatch, "session.end's final hash is not the hash of seq %d", t.Seq)
	}
	if err := schemas.VerifyEnd(e.GatewayKey, f.SessionID, e); err != nil {
		alert(BadSignature, "%v (gateway key %s)", err, keyID(e.GatewayKey))
		return false
	}
	if len(keys) == 0 {
		return false // no alert per session: the processor warns once at start
	}
	if !keys.trusted(e.GatewayKey) {
		alert(UntrustedKey, "session.end signed by gateway key %s, which is not in the trusted list", keyID(e.GatewayKey))
		return false
	}
	return true
}

// keyID shortens a public key for messages.
func keyID(k []byte) string {
	s := base64.StdEncoding.EncodeToString(k)
	if len(s) > 12 {
		s = s[:12] + "…"
	}
	return s
}
