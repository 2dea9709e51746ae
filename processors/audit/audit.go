// Package audit defines the records of tapline.audit: flat JSON objects, one per
// command, per session lifecycle event and per integrity alert, that a SIEM can ingest
// without Avro. docs/audit-format.md documents every field; change both together.
package audit

import (
	"encoding/hex"
	"sort"
	"strconv"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Schema is the value of every record's "schema" field; it changes only when a field
// changes meaning or is removed (new fields may appear at any time).
const Schema = "tapline.audit.v1"

// Record types.
const (
	TypeCommand          = "command"
	TypeSessionStart     = "session.start"
	TypeSessionDenied    = "session.denied"
	TypeSessionEnd       = "session.end"
	TypeSessionAbandoned = "session.abandoned"
	TypeSessionResumed   = "session.resumed"
	TypeIntegrity        = "integrity.alert"
	// TypeFrameReprocessed: a frame whose payload was withheld (the processors failed
	// on it) was processed again by `tapline process --reprocess` and re-emitted.
	TypeFrameReprocessed = "frame.reprocessed"
)

// Record is one audit event. Fields that do not apply to a type are omitted.
type Record struct {
	Schema    string `json:"schema"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Time      string `json:"ts"`
	Outcome   string `json:"outcome"`
	Severity  string `json:"severity"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
	Protocol  string `json:"protocol,omitempty"`
	Target    string `json:"target,omitempty"`
	GatewayID string `json:"gateway_id,omitempty"`

	UserIssuer  string   `json:"user_issuer,omitempty"`
	UserSubject string   `json:"user_subject,omitempty"`
	UserEmail   string   `json:"user_email,omitempty"`
	UserName    string   `json:"user_name,omitempty"`
	UserGroups  []string `json:"user_groups,omitempty"`
	TokenID     string   `json:"token_id,omitempty"`
	ClientAddr  string   `json:"client_addr,omitempty"`

	CommandSeq    *int64   `json:"command_seq,omitempty"`
	CommandSeqEnd *int64   `json:"command_seq_end,omitempty"`
	CommandKind   string   `json:"command_kind,omitempty"`
	CommandText   string   `json:"command_text,omitempty"`
	CommandParams []string `json:"command_params,omitempty"`
	Channel       *int64   `json:"channel,omitempty"`
	Status        string   `json:"status,omitempty"`
	Error         string   `json:"error,omitempty"`
	Rows          *int64   `json:"rows,omitempty"`
	ExitStatus    *int32   `json:"exit_status,omitempty"`
	StartedAt     string   `json:"started_at,omitempty"`
	EndedAt       string   `json:"ended_at,omitempty"`
	DurationMS    *float64 `json:"duration_ms,omitempty"`
	MaskedCount   int64    `json:"masked_count,omitempty"`
	MaskedTypes   []string `json:"masked_types,omitempty"`

	SessionStatus string   `json:"session_status,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	Frames        *int64   `json:"frames,omitempty"`
	BytesClient   *int64   `json:"bytes_client,omitempty"`
	BytesServer   *int64   `json:"bytes_server,omitempty"`
	Commands      *int64   `json:"commands,omitempty"`
	LastSeq       *int64   `json:"last_seq,omitempty"`
	FinalHash     string   `json:"final_hash,omitempty"`
	SignatureOK   *bool    `json:"signature_ok,omitempty"`
	Integrity     []string `json:"integrity,omitempty"`

	Alert       string `json:"alert,omitempty"`
	AlertDetail string `json:"alert_detail,omitempty"`
}

// Timestamp formats event times: RFC 3339 in UTC with microseconds, as recorded.
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

// Base fills the fields every record has from a session summary.
func Base(typ string, s *schemas.Session, seq int64, ts time.Time) Record {
	return Record{
		Schema: Schema, ID: s.SessionID + "/" + strconv.FormatInt(seq, 10) + "/" + typ, Type: typ,
		Time: Timestamp(ts), Outcome: "success", Severity: "info", SessionID: s.SessionID, Seq: seq,
		Protocol: string(s.Protocol), Target: s.Target, GatewayID: s.GatewayID,
		UserIssuer: s.Issuer, UserSubject: s.Subject, UserEmail: s.Email, UserName: s.Name,
		UserGroups: s.Groups, TokenID: s.TokenID, ClientAddr: s.ClientAddr,
	}
}

// Command is the record of one stitched command.
func Command(s *schemas.Session, c *schemas.Command) Record {
	r := Base(TypeCommand, s, c.CommandSeq, c.EndedAt)
	seq, end, ch, rows := c.CommandSeq, c.SeqEnd, c.Channel, c.Rows
	d := float64(c.EndedAt.Sub(c.StartedAt).Microseconds()) / 1000
	r.CommandSeq, r.CommandSeqEnd, r.Channel, r.Rows, r.DurationMS = &seq, &end, &ch, &rows, &d
	r.CommandKind, r.CommandText, r.CommandParams = c.Kind, c.Text, c.Params
	r.Status, r.Error, r.ExitStatus = c.Status, c.Error, c.ExitStatus
	r.StartedAt, r.EndedAt = Timestamp(c.StartedAt), Timestamp(c.EndedAt)
	for k, v := range c.Masks {
		r.MaskedCount += v
		r.MaskedTypes = append(r.MaskedTypes, k)
	}
	sort.Strings(r.MaskedTypes)
	switch c.Status {
	case "ok":
	case "error":
		r.Outcome, r.Severity = "failure", "low"
	default:
		r.Outcome = "unknown"
	}
	return r
}

// Lifecycle is the record of a session event (start, denied, end, abandoned,
// resumed), carrying the summary as it stands.
func Lifecycle(typ string, s *schemas.Session, seq int64, ts time.Time) Record {
	r := Base(typ, s, seq, ts)
	frames, bc, bs, cmds, last := s.Frames, s.BytesClient, s.BytesServer, s.Commands, s.LastSeq
	r.SessionStatus, r.Reason = s.Status, s.EndReason
	r.Frames, r.BytesClient, r.BytesServer, r.Commands, r.LastSeq = &frames, &bc, &bs, &cmds, &last
	r.SignatureOK, r.Integrity = s.SignatureOK, s.Integrity
	if len(s.FinalHash) > 0 {
		r.FinalHash = hex.EncodeToString(s.FinalHash)
	}
	switch typ {
	case TypeSessionDenied:
		r.Outcome, r.Severity = "failure", "medium"
	case TypeSessionAbandoned:
		r.Outcome, r.Severity = "unknown", "low"
	case TypeSessionEnd:
		if s.SignatureOK != nil && !*s.SignatureOK || len(s.Integrity) > 0 {
			r.Outcome, r.Severity = "failure", "high"
		}
	}
	return r
}

// Alert is the record of an integrity problem.
func Alert(s *schemas.Session, kind, detail string, seq int64, ts time.Time) Record {
	r := Base(TypeIntegrity, s, seq, ts)
	r.ID += "/" + kind
	r.Outcome, r.Severity = "failure", "high"
	r.Alert, r.AlertDetail = kind, detail
	return r
}
