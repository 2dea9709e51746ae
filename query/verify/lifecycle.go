package verify

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/tapline/tapline/schemas"
)

// The chain covers a lifecycle frame's payload (its JSON), not the typed start/end
// fields next to it. Those typed fields are what the sessions table and access
// control are built from, so they must say what the payload says.

// startMismatch compares a session.start/denied frame's typed fields with its payload.
func startMismatch(f *schemas.Frame) string {
	var p struct {
		Start  json.RawMessage `json:"start"`
		Denial string          `json:"denial"`
	}
	if err := json.Unmarshal(f.Payload, &p); err != nil {
		return "payload is not JSON: " + err.Error()
	}
	raw := p.Start
	if raw == nil { // the payload is the SessionStart itself
		raw = f.Payload
	}
	var s schemas.SessionStart
	if err := json.Unmarshal(raw, &s); err != nil {
		return "payload does not hold a session start: " + err.Error()
	}
	if f.Start == nil {
		return "typed start fields missing"
	}
	if !sameStart(&s, f.Start) {
		return "typed start fields (identity, target) differ from the recorded payload"
	}
	if f.Kind == schemas.KindSessionDenied && p.Denial != "" && p.Denial != f.Denial {
		return "typed denial differs from the recorded payload"
	}
	return ""
}

func sameStart(a, b *schemas.SessionStart) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.Email == b.Email && a.Name == b.Name &&
		slices.Equal(a.Groups, b.Groups) && a.TokenID == b.TokenID &&
		a.TokenExpiry.Truncate(time.Microsecond).Equal(b.TokenExpiry.Truncate(time.Microsecond)) &&
		a.Target == b.Target && a.TargetAddr == b.TargetAddr && a.ClientAddr == b.ClientAddr &&
		(len(a.Params) == 0 && len(b.Params) == 0 || maps.Equal(a.Params, b.Params))
}

// endRecord returns the end record to check: the payload's (the chain covers it),
// and a description of any disagreement with the typed fields.
func endRecord(f *schemas.Frame) (*schemas.SessionEnd, string) {
	var e schemas.SessionEnd
	if err := json.Unmarshal(f.Payload, &e); err != nil {
		if f.End != nil {
			return f.End, "payload is not a JSON end record: " + err.Error()
		}
		return nil, "no end record: payload is not JSON and typed end fields are missing"
	}
	switch {
	case f.End == nil:
		return &e, "typed end fields missing"
	case !sameEnd(&e, f.End):
		return &e, "typed end fields differ from the recorded payload"
	}
	return &e, ""
}

func sameEnd(a, b *schemas.SessionEnd) bool {
	return a.Reason == b.Reason && a.LastSeq == b.LastSeq && a.Frames == b.Frames &&
		a.BytesClient == b.BytesClient && a.BytesServer == b.BytesServer &&
		bytes.Equal(a.FinalHash, b.FinalHash) && bytes.Equal(a.Signature, b.Signature) &&
		bytes.Equal(a.GatewayKey, b.GatewayKey)
}
