package schemas

import (
	"fmt"
	"time"
)

// Frame is one protocol message, or one fragment of it, as recorded by an edge.
type Frame struct {
	SessionID     string
	Seq           int64
	TS            time.Time
	Direction     Direction
	Protocol      Protocol
	Kind          string
	Channel       int64
	Payload       []byte
	Fragment      int32
	Final         bool
	PayloadSalt   []byte
	PayloadDigest []byte
	PrevHash      []byte
	Hash          []byte
	GatewayID     string
	Masks         map[string]int64
	Start         *SessionStart
	Denial        string
	End           *SessionEnd
	// ProcessorSig is set by the processor that masked the frame (SignMasked).
	ProcessorSig *ProcessorSig
}

// ProcessorSig is a processor's signature over a masked frame.
type ProcessorSig struct {
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// SessionStart is what session.start (and session.denied) frames say about the session.
type SessionStart struct {
	Issuer      string            `json:"issuer"`
	Subject     string            `json:"subject"`
	Email       string            `json:"email"`
	Name        string            `json:"name"`
	Groups      []string          `json:"groups"`
	TokenID     string            `json:"token_id"`
	TokenExpiry time.Time         `json:"token_expiry"`
	Target      string            `json:"target"`
	TargetAddr  string            `json:"target_addr"`
	ClientAddr  string            `json:"client_addr"`
	Params      map[string]string `json:"params"`
}

// SessionEnd is what the session.end frame says: why, how much, and the signed tip.
type SessionEnd struct {
	Reason      string `json:"reason"`
	LastSeq     int64  `json:"last_seq"`
	Frames      int64  `json:"frames"`
	BytesClient int64  `json:"bytes_client"`
	BytesServer int64  `json:"bytes_server"`
	FinalHash   []byte `json:"final_hash"`
	Signature   []byte `json:"signature"`
	GatewayKey  []byte `json:"gateway_key"`
}

// IsLifecycle reports whether the frame was emitted by the gateway rather than read off the wire.
func (f *Frame) IsLifecycle() bool {
	return f.Kind == KindSessionStart || f.Kind == KindSessionDenied || f.Kind == KindSessionEnd
}

var frameCodec = newCodec("frame", frameToNative, frameFromNative).withDirect(appendFrame).withDirectDecode(decodeFrameBody)

// FrameCodec returns the codec for tapline.frames.raw and tapline.frames values.
func FrameCodec() *Codec[Frame] { return frameCodec }

const (
	nsPrefix      = "dev.tapline.v1."
	tsMicrosUnion = "long.timestamp-micros"
)

func frameToNative(f *Frame) map[string]any {
	m := map[string]any{
		"session_id":     f.SessionID,
		"seq":            f.Seq,
		"ts":             f.TS,
		"direction":      string(f.Direction),
		"protocol":       string(f.Protocol),
		"kind":           f.Kind,
		"channel":        f.Channel,
		"payload":        nonNil(f.Payload),
		"fragment":       f.Fragment,
		"final":          f.Final,
		"payload_salt":   nonNil(f.PayloadSalt),
		"payload_digest": nonNil(f.PayloadDigest),
		"prev_hash":      nonNil(f.PrevHash),
		"hash":           nonNil(f.Hash),
		"gateway_id":     f.GatewayID,
		"masks":          longMap(f.Masks),
		"start":          nil,
		"denial":         nil,
		"end":            nil,
		"processor_sig":  nil,
	}
	if f.Start != nil {
		m["start"] = map[string]any{nsPrefix + "SessionStart": startToNative(f.Start)}
	}
	if f.Denial != "" {
		m["denial"] = map[string]any{"string": f.Denial}
	}
	if f.End != nil {
		m["end"] = map[string]any{nsPrefix + "SessionEnd": endToNative(f.End)}
	}
	if p := f.ProcessorSig; p != nil {
		m["processor_sig"] = map[string]any{nsPrefix + "ProcessorSignature": map[string]any{
			"key": nonNil(p.Key), "signature": nonNil(p.Signature),
		}}
	}
	return m
}

func startToNative(s *SessionStart) map[string]any {
	m := map[string]any{
		"issuer": s.Issuer, "subject": s.Subject, "email": s.Email, "name": s.Name,
		"groups": stringsToNative(s.Groups), "token_id": s.TokenID, "token_expiry": nil,
		"target": s.Target, "target_addr": s.TargetAddr, "client_addr": s.ClientAddr,
		"params": stringMap(s.Params),
	}
	if !s.TokenExpiry.IsZero() {
		m["token_expiry"] = map[string]any{tsMicrosUnion: s.TokenExpiry}
	}
	return m
}

func endToNative(e *SessionEnd) map[string]any {
	return map[string]any{
		"reason": e.Reason, "last_seq": e.LastSeq, "frames": e.Frames,
		"bytes_client": e.BytesClient, "bytes_server": e.BytesServer,
		"final_hash": nonNil(e.FinalHash), "signature": nonNil(e.Signature), "gateway_key": nonNil(e.GatewayKey),
	}
}

func frameFromNative(m map[string]any) (Frame, error) {
	r := reader{m: m}
	f := Frame{
		SessionID:     r.str("session_id"),
		Seq:           r.long("seq"),
		TS:            r.time("ts"),
		Direction:     Direction(r.str("direction")),
		Protocol:      Protocol(r.str("protocol")),
		Kind:          r.str("kind"),
		Channel:       r.long("channel"),
		Payload:       r.bytes("payload"),
		Fragment:      r.int("fragment"),
		Final:         r.bool("final"),
		PayloadSalt:   r.bytes("payload_salt"),
		PayloadDigest: r.bytes("payload_digest"),
		PrevHash:      r.bytes("prev_hash"),
		Hash:          r.bytes("hash"),
		GatewayID:     r.str("gateway_id"),
		Masks:         r.longMap("masks"),
	}
	if s, ok := r.union("start", nsPrefix+"SessionStart").(map[string]any); ok {
		sr := reader{m: s}
		f.Start = &SessionStart{
			Issuer: sr.str("issuer"), Subject: sr.str("subject"), Email: sr.str("email"), Name: sr.str("name"),
			Groups: sr.strings("groups"), TokenID: sr.str("token_id"), Target: sr.str("target"),
			TargetAddr: sr.str("target_addr"), ClientAddr: sr.str("client_addr"), Params: sr.stringMap("params"),
		}
		if t, ok := sr.union("token_expiry", tsMicrosUnion).(time.Time); ok {
			f.Start.TokenExpiry = t
		}
		if sr.err != nil {
			return f, sr.err
		}
	}
	if d, ok := r.union("denial", "string").(string); ok {
		f.Denial = d
	}
	if e, ok := r.union("end", nsPrefix+"SessionEnd").(map[string]any); ok {
		er := reader{m: e}
		f.End = &SessionEnd{
			Reason: er.str("reason"), LastSeq: er.long("last_seq"), Frames: er.long("frames"),
			BytesClient: er.long("bytes_client"), BytesServer: er.long("bytes_server"),
			FinalHash: er.bytes("final_hash"), Signature: er.bytes("signature"), GatewayKey: er.bytes("gateway_key"),
		}
		if er.err != nil {
			return f, er.err
		}
	}
	if p, ok := r.union("processor_sig", nsPrefix+"ProcessorSignature").(map[string]any); ok {
		pr := reader{m: p}
		f.ProcessorSig = &ProcessorSig{Key: pr.bytes("key"), Signature: pr.bytes("signature")}
		if pr.err != nil {
			return f, pr.err
		}
	}
	return f, r.err
}

// reader pulls typed fields out of a goavro native record, keeping the first error.
type reader struct {
	m   map[string]any
	err error
}

func (r *reader) get(k string) any {
	v, ok := r.m[k]
	if !ok && r.err == nil {
		r.err = fmt.Errorf("field %q missing", k)
	}
	return v
}

func typed[V any](r *reader, k string) V {
	var zero V
	raw := r.get(k)
	v, ok := raw.(V)
	if !ok && raw != nil && r.err == nil {
		r.err = fmt.Errorf("field %q: unexpected %T", k, raw)
	}
	if !ok {
		return zero
	}
	return v
}

func (r *reader) str(k string) string     { return typed[string](r, k) }
func (r *reader) long(k string) int64     { return typed[int64](r, k) }
func (r *reader) int(k string) int32      { return typed[int32](r, k) }
func (r *reader) bool(k string) bool      { return typed[bool](r, k) }
func (r *reader) bytes(k string) []byte   { return typed[[]byte](r, k) }
func (r *reader) time(k string) time.Time { return typed[time.Time](r, k).UTC() }

func (r *reader) union(k, branch string) any {
	u, ok := r.get(k).(map[string]any)
	if !ok {
		return nil
	}
	return u[branch]
}

func (r *reader) strings(k string) []string {
	var out []string
	for _, v := range typed[[]any](r, k) {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func (r *reader) stringMap(k string) map[string]string {
	src := typed[map[string]any](r, k)
	if len(src) == 0 {
		return nil
	}
	out := make(map[string]string, len(src))
	for key, v := range src {
		out[key], _ = v.(string)
	}
	return out
}

func (r *reader) longMap(k string) map[string]int64 {
	src := typed[map[string]any](r, k)
	if len(src) == 0 {
		return nil
	}
	out := make(map[string]int64, len(src))
	for key, v := range src {
		out[key], _ = v.(int64)
	}
	return out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func stringsToNative(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func longMap(m map[string]int64) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
