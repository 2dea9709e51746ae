package schemas

import "time"

// Session statuses.
const (
	StatusActive    = "active"
	StatusEnded     = "ended"
	StatusDenied    = "denied"
	StatusAbandoned = "abandoned"
)

// Session summarises one session. Summaries are re-emitted as the session goes on;
// the one with the highest Version is the latest.
type Session struct {
	SessionID   string
	Protocol    Protocol
	Target      string
	GatewayID   string
	Issuer      string
	Subject     string
	Email       string
	Name        string
	Groups      []string
	TokenID     string
	ClientAddr  string
	StartedAt   time.Time
	EndedAt     *time.Time
	Status      string
	EndReason   string
	Frames      int64
	BytesClient int64
	BytesServer int64
	Commands    int64
	LastSeq     int64
	FinalHash   []byte
	SignatureOK *bool
	Integrity   []string
	Version     int64
}

var sessionCodec = newCodec("session", sessionToNative, sessionFromNative)

// SessionCodec returns the codec for tapline.sessions values.
func SessionCodec() *Codec[Session] { return sessionCodec }

func sessionToNative(s *Session) map[string]any {
	m := map[string]any{
		"session_id": s.SessionID, "protocol": string(s.Protocol), "target": s.Target,
		"gateway_id": s.GatewayID, "issuer": s.Issuer, "subject": s.Subject, "email": s.Email,
		"name": s.Name, "groups": stringsToNative(s.Groups), "token_id": s.TokenID,
		"client_addr": s.ClientAddr, "started_at": s.StartedAt, "ended_at": nil,
		"status": s.Status, "end_reason": s.EndReason, "frames": s.Frames,
		"bytes_client": s.BytesClient, "bytes_server": s.BytesServer, "commands": s.Commands,
		"last_seq": s.LastSeq, "final_hash": nonNil(s.FinalHash), "signature_ok": nil,
		"integrity": stringsToNative(s.Integrity), "version": s.Version,
	}
	if s.EndedAt != nil {
		m["ended_at"] = map[string]any{tsMicrosUnion: *s.EndedAt}
	}
	if s.SignatureOK != nil {
		m["signature_ok"] = map[string]any{"boolean": *s.SignatureOK}
	}
	return m
}

func sessionFromNative(m map[string]any) (Session, error) {
	r := reader{m: m}
	s := Session{
		SessionID: r.str("session_id"), Protocol: Protocol(r.str("protocol")), Target: r.str("target"),
		GatewayID: r.str("gateway_id"), Issuer: r.str("issuer"), Subject: r.str("subject"),
		Email: r.str("email"), Name: r.str("name"), Groups: r.strings("groups"), TokenID: r.str("token_id"),
		ClientAddr: r.str("client_addr"), StartedAt: r.time("started_at"), Status: r.str("status"),
		EndReason: r.str("end_reason"), Frames: r.long("frames"), BytesClient: r.long("bytes_client"),
		BytesServer: r.long("bytes_server"), Commands: r.long("commands"), LastSeq: r.long("last_seq"),
		FinalHash: r.bytes("final_hash"), Integrity: r.strings("integrity"), Version: r.long("version"),
	}
	if t, ok := r.union("ended_at", tsMicrosUnion).(time.Time); ok {
		t = t.UTC()
		s.EndedAt = &t
	}
	if b, ok := r.union("signature_ok", "boolean").(bool); ok {
		s.SignatureOK = &b
	}
	return s, r.err
}
