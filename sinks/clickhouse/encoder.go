package clickhouse

import (
	"encoding/json"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Table names.
const (
	TableFrames          = "frames"
	TableCommands        = "commands"
	TableSessions        = "sessions"
	TableIntegrityAlerts = "integrity_alerts"
)

// col builds one BlockColumn from rows with a per-row getter.
func col[R, V any](name string, rows []R, get func(*R) V) BlockColumn {
	vs := make([]V, len(rows))
	for i := range rows {
		vs[i] = get(&rows[i])
	}
	return BlockColumn{Name: name, Values: vs}
}

// DateTime64 holds 1900-01-01 to 2299-12-31; an unset time is stored as the Unix epoch.
var (
	minTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2299, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

func utc(t time.Time) time.Time {
	switch {
	case t.IsZero():
		return time.Unix(0, 0).UTC()
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
	}
	return t.UTC()
}

// FramesBlock encodes frames as a block of the frames table.
func FramesBlock(fs []schemas.Frame) *Block {
	return &Block{Table: TableFrames, Rows: len(fs), Columns: []BlockColumn{
		col("session_id", fs, func(f *schemas.Frame) string { return f.SessionID }),
		col("seq", fs, func(f *schemas.Frame) int64 { return f.Seq }),
		col("ts", fs, func(f *schemas.Frame) time.Time { return utc(f.TS) }),
		col("direction", fs, func(f *schemas.Frame) string { return string(f.Direction) }),
		col("protocol", fs, func(f *schemas.Frame) string { return string(f.Protocol) }),
		col("kind", fs, func(f *schemas.Frame) string { return f.Kind }),
		col("channel", fs, func(f *schemas.Frame) int64 { return f.Channel }),
		col("fragment", fs, func(f *schemas.Frame) int32 { return f.Fragment }),
		col("final", fs, func(f *schemas.Frame) bool { return f.Final }),
		col("payload", fs, func(f *schemas.Frame) string { return string(f.Payload) }),
		col("payload_salt", fs, func(f *schemas.Frame) string { return string(f.PayloadSalt) }),
		col("payload_digest", fs, func(f *schemas.Frame) string { return string(f.PayloadDigest) }),
		col("prev_hash", fs, func(f *schemas.Frame) string { return string(f.PrevHash) }),
		col("hash", fs, func(f *schemas.Frame) string { return string(f.Hash) }),
		col("gateway_id", fs, func(f *schemas.Frame) string { return f.GatewayID }),
		col("masks", fs, func(f *schemas.Frame) map[string]int64 { return nonNilMap(f.Masks) }),
		col("session_start", fs, func(f *schemas.Frame) string { return jsonOrEmpty(f.Start) }),
		col("denial", fs, func(f *schemas.Frame) string { return f.Denial }),
		col("session_end", fs, func(f *schemas.Frame) string { return jsonOrEmpty(f.End) }),
		col("processor_sig", fs, func(f *schemas.Frame) string { return processorSigColumn(f.ProcessorSig) }),
	}}
}

// CommandsBlock encodes commands as a block of the commands table.
func CommandsBlock(cs []schemas.Command) *Block {
	return &Block{Table: TableCommands, Rows: len(cs), Columns: []BlockColumn{
		col("session_id", cs, func(c *schemas.Command) string { return c.SessionID }),
		col("command_seq", cs, func(c *schemas.Command) int64 { return c.CommandSeq }),
		col("seq_end", cs, func(c *schemas.Command) int64 { return c.SeqEnd }),
		col("protocol", cs, func(c *schemas.Command) string { return string(c.Protocol) }),
		col("target", cs, func(c *schemas.Command) string { return c.Target }),
		col("subject", cs, func(c *schemas.Command) string { return c.Subject }),
		col("channel", cs, func(c *schemas.Command) int64 { return c.Channel }),
		col("kind", cs, func(c *schemas.Command) string { return c.Kind }),
		col("text", cs, func(c *schemas.Command) string { return c.Text }),
		col("params", cs, func(c *schemas.Command) []string { return nonNilSlice(c.Params) }),
		col("started_at", cs, func(c *schemas.Command) time.Time { return utc(c.StartedAt) }),
		col("ended_at", cs, func(c *schemas.Command) time.Time { return utc(c.EndedAt) }),
		col("status", cs, func(c *schemas.Command) string { return c.Status }),
		col("error", cs, func(c *schemas.Command) string { return c.Error }),
		col("rows", cs, func(c *schemas.Command) int64 { return c.Rows }),
		col("exit_status", cs, func(c *schemas.Command) *int32 { return c.ExitStatus }),
		col("masks", cs, func(c *schemas.Command) map[string]int64 { return nonNilMap(c.Masks) }),
	}}
}

// SessionsBlock encodes session summaries as a block of the sessions table.
func SessionsBlock(ss []schemas.Session) *Block {
	return &Block{Table: TableSessions, Rows: len(ss), Columns: []BlockColumn{
		col("session_id", ss, func(s *schemas.Session) string { return s.SessionID }),
		col("version", ss, func(s *schemas.Session) uint64 { return uint64(max(s.Version, 0)) }),
		col("protocol", ss, func(s *schemas.Session) string { return string(s.Protocol) }),
		col("target", ss, func(s *schemas.Session) string { return s.Target }),
		col("gateway_id", ss, func(s *schemas.Session) string { return s.GatewayID }),
		col("issuer", ss, func(s *schemas.Session) string { return s.Issuer }),
		col("subject", ss, func(s *schemas.Session) string { return s.Subject }),
		col("email", ss, func(s *schemas.Session) string { return s.Email }),
		col("name", ss, func(s *schemas.Session) string { return s.Name }),
		col("groups", ss, func(s *schemas.Session) []string { return nonNilSlice(s.Groups) }),
		col("token_id", ss, func(s *schemas.Session) string { return s.TokenID }),
		col("client_addr", ss, func(s *schemas.Session) string { return s.ClientAddr }),
		col("started_at", ss, func(s *schemas.Session) time.Time { return utc(s.StartedAt) }),
		col("ended_at", ss, func(s *schemas.Session) *time.Time { return utcPtr(s.EndedAt) }),
		col("status", ss, func(s *schemas.Session) string { return s.Status }),
		col("end_reason", ss, func(s *schemas.Session) string { return s.EndReason }),
		col("frames", ss, func(s *schemas.Session) int64 { return s.Frames }),
		col("bytes_client", ss, func(s *schemas.Session) int64 { return s.BytesClient }),
		col("bytes_server", ss, func(s *schemas.Session) int64 { return s.BytesServer }),
		col("commands", ss, func(s *schemas.Session) int64 { return s.Commands }),
		col("last_seq", ss, func(s *schemas.Session) int64 { return s.LastSeq }),
		col("final_hash", ss, func(s *schemas.Session) string { return string(s.FinalHash) }),
		col("signature_ok", ss, func(s *schemas.Session) *bool { return s.SignatureOK }),
		col("integrity", ss, func(s *schemas.Session) []string { return nonNilSlice(s.Integrity) }),
	}}
}

// alertRow is one integrity problem of one session.
type alertRow struct {
	s     *schemas.Session
	alert string
}

// AlertsBlock encodes the integrity lists of session summaries as a block of the
// integrity_alerts table, one row per (session, problem).
func AlertsBlock(ss []schemas.Session) *Block {
	var as []alertRow
	for i := range ss {
		for _, a := range ss[i].Integrity {
			as = append(as, alertRow{s: &ss[i], alert: a})
		}
	}
	return &Block{Table: TableIntegrityAlerts, Rows: len(as), Columns: []BlockColumn{
		col("session_id", as, func(a *alertRow) string { return a.s.SessionID }),
		col("alert", as, func(a *alertRow) string { return a.alert }),
		col("started_at", as, func(a *alertRow) time.Time { return utc(a.s.StartedAt) }),
		col("session_version", as, func(a *alertRow) uint64 { return uint64(max(a.s.Version, 0)) }),
		col("protocol", as, func(a *alertRow) string { return string(a.s.Protocol) }),
		col("target", as, func(a *alertRow) string { return a.s.Target }),
		col("subject", as, func(a *alertRow) string { return a.s.Subject }),
		col("gateway_id", as, func(a *alertRow) string { return a.s.GatewayID }),
	}}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := utc(*t)
	return &u
}

func nonNilMap(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// jsonOrEmpty returns v as JSON, or "" for a nil pointer. Marshalling the schemas'
// plain structs cannot fail.
func jsonOrEmpty[T any](v *T) string {
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// processorSigColumn stores a processor signature as key || signature, "" for none.
func processorSigColumn(p *schemas.ProcessorSig) string {
	if p == nil {
		return ""
	}
	return string(p.Key) + string(p.Signature)
}

// ParseProcessorSig reverses processorSigColumn. A value of the wrong length is kept
// as an unverifiable signature rather than dropped, so verify reports it.
func ParseProcessorSig(v string) *schemas.ProcessorSig {
	const keySize = 32
	switch {
	case v == "":
		return nil
	case len(v) == keySize+64:
		return &schemas.ProcessorSig{Key: []byte(v[:keySize]), Signature: []byte(v[keySize:])}
	}
	return &schemas.ProcessorSig{Signature: []byte(v)}
}
