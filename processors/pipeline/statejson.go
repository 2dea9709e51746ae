package pipeline

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/tapline/tapline/schemas"
)

// A session's state is saved after every transaction that touched it; with
// many short sessions interleaved that is about one save per frame, and
// encoding/json's reflection over the session was half of a save (the other
// half is the protocol's conversation). appendSession writes the same bytes
// as json.Marshal((*plainSession)(s)) directly; TestSessionJSONMatchesEncodingJSON
// and FuzzSessionJSON hold it to that. Fields that are rarely set (held
// frames, an out-of-range time) go through encoding/json.

// appendSession appends s without its conversation, as json.Marshal of a
// plainSession would.
func appendSession(b []byte, s *session) ([]byte, error) {
	var err error
	b = append(b, `{"summary":`...)
	if b, err = appendSummary(b, &s.Summary); err != nil {
		return nil, err
	}
	b = append(b, `,"tip":{"seq":`...)
	b = strconv.AppendInt(b, s.Tip.Seq, 10)
	if len(s.Tip.Hash) > 0 {
		b = append(b, `,"hash":`...)
		b = appendBytes(b, s.Tip.Hash)
	}
	if s.Tip.Ended {
		b = append(b, `,"ended":true`...)
	}
	b = append(b, `},"last_ts":`...)
	if b, err = appendTime(b, s.LastTS); err != nil {
		return nil, err
	}
	b = append(b, `,"summary_ts":`...)
	if b, err = appendTime(b, s.SummaryTS); err != nil {
		return nil, err
	}
	if s.Changed {
		b = append(b, `,"changed":true`...)
	}
	if s.Closed {
		b = append(b, `,"closed":true`...)
	}
	if s.AbandonedAt != nil {
		b = append(b, `,"abandoned_at":`...)
		if b, err = appendTime(b, *s.AbandonedAt); err != nil {
			return nil, err
		}
	}
	if len(s.Held) > 0 {
		h, err := json.Marshal(s.Held)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"held":`...), h...)
	}
	return append(b, '}'), nil
}

// appendSummary appends a schemas.Session (no JSON tags: field names as
// they are).
func appendSummary(b []byte, m *schemas.Session) ([]byte, error) {
	var err error
	b = appendField(b, `{"SessionID":`, m.SessionID)
	b = appendField(b, `,"Protocol":`, string(m.Protocol))
	b = appendField(b, `,"Target":`, m.Target)
	b = appendField(b, `,"GatewayID":`, m.GatewayID)
	b = appendField(b, `,"Issuer":`, m.Issuer)
	b = appendField(b, `,"Subject":`, m.Subject)
	b = appendField(b, `,"Email":`, m.Email)
	b = appendField(b, `,"Name":`, m.Name)
	b = appendStrings(append(b, `,"Groups":`...), m.Groups)
	b = appendField(b, `,"TokenID":`, m.TokenID)
	b = appendField(b, `,"ClientAddr":`, m.ClientAddr)
	if b, err = appendTime(append(b, `,"StartedAt":`...), m.StartedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"EndedAt":`...)
	if m.EndedAt == nil {
		b = append(b, "null"...)
	} else if b, err = appendTime(b, *m.EndedAt); err != nil {
		return nil, err
	}
	b = appendField(b, `,"Status":`, m.Status)
	b = appendField(b, `,"EndReason":`, m.EndReason)
	b = strconv.AppendInt(append(b, `,"Frames":`...), m.Frames, 10)
	b = strconv.AppendInt(append(b, `,"BytesClient":`...), m.BytesClient, 10)
	b = strconv.AppendInt(append(b, `,"BytesServer":`...), m.BytesServer, 10)
	b = strconv.AppendInt(append(b, `,"Commands":`...), m.Commands, 10)
	b = strconv.AppendInt(append(b, `,"LastSeq":`...), m.LastSeq, 10)
	b = append(b, `,"FinalHash":`...)
	if m.FinalHash == nil {
		b = append(b, "null"...)
	} else {
		b = appendBytes(b, m.FinalHash)
	}
	b = append(b, `,"SignatureOK":`...)
	switch {
	case m.SignatureOK == nil:
		b = append(b, "null"...)
	case *m.SignatureOK:
		b = append(b, "true"...)
	default:
		b = append(b, "false"...)
	}
	b = appendStrings(append(b, `,"Integrity":`...), m.Integrity)
	b = strconv.AppendInt(append(b, `,"Version":`...), m.Version, 10)
	return append(b, '}'), nil
}

func appendField(b []byte, name, v string) []byte {
	return schemas.AppendJSONString(append(b, name...), v, true)
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	return schemas.AppendJSONStrings(b, ss, true)
}

func appendBytes(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendTime writes what time.Time's MarshalJSON writes; a year or a zone
// offset it refuses goes through it for the same error.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	_, off := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		j, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return append(b, j...), nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}
