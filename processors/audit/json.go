package audit

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/tapline/tapline/schemas"
)

// The processors write one audit record per command, and encoding/json's
// reflection over Record was 5% of their CPU on pgbench traffic. Marshal
// writes the same bytes directly; TestMarshalMatchesEncodingJSON and
// FuzzMarshal hold it to json.Marshal's output.

// Marshal returns the record's JSON, byte for byte as json.Marshal writes it.
func (r *Record) Marshal() ([]byte, error) {
	if d := r.DurationMS; d != nil && (math.IsNaN(*d) || math.IsInf(*d, 0)) {
		return json.Marshal(r) // its error names the value
	}
	return r.appendJSON(make([]byte, 0, 768)), nil
}

func (r *Record) appendJSON(b []byte) []byte {
	b = str(append(b, `{"schema":`...), r.Schema)
	b = str(append(b, `,"id":`...), r.ID)
	b = str(append(b, `,"type":`...), r.Type)
	b = str(append(b, `,"ts":`...), r.Time)
	b = str(append(b, `,"outcome":`...), r.Outcome)
	b = str(append(b, `,"severity":`...), r.Severity)
	b = str(append(b, `,"session_id":`...), r.SessionID)
	b = strconv.AppendInt(append(b, `,"seq":`...), r.Seq, 10)
	b = optStr(b, `,"protocol":`, r.Protocol)
	b = optStr(b, `,"target":`, r.Target)
	b = optStr(b, `,"gateway_id":`, r.GatewayID)
	b = optStr(b, `,"user_issuer":`, r.UserIssuer)
	b = optStr(b, `,"user_subject":`, r.UserSubject)
	b = optStr(b, `,"user_email":`, r.UserEmail)
	b = optStr(b, `,"user_name":`, r.UserName)
	b = optStrs(b, `,"user_groups":`, r.UserGroups)
	b = optStr(b, `,"token_id":`, r.TokenID)
	b = optStr(b, `,"client_addr":`, r.ClientAddr)
	b = optInt(b, `,"command_seq":`, r.CommandSeq)
	b = optInt(b, `,"command_seq_end":`, r.CommandSeqEnd)
	b = optStr(b, `,"command_kind":`, r.CommandKind)
	b = optStr(b, `,"command_text":`, r.CommandText)
	b = optStrs(b, `,"command_params":`, r.CommandParams)
	b = optInt(b, `,"channel":`, r.Channel)
	b = optStr(b, `,"status":`, r.Status)
	b = optStr(b, `,"error":`, r.Error)
	b = optInt(b, `,"rows":`, r.Rows)
	if r.ExitStatus != nil {
		b = strconv.AppendInt(append(b, `,"exit_status":`...), int64(*r.ExitStatus), 10)
	}
	b = optStr(b, `,"started_at":`, r.StartedAt)
	b = optStr(b, `,"ended_at":`, r.EndedAt)
	if r.DurationMS != nil {
		b = appendFloat(append(b, `,"duration_ms":`...), *r.DurationMS)
	}
	if r.MaskedCount != 0 {
		b = strconv.AppendInt(append(b, `,"masked_count":`...), r.MaskedCount, 10)
	}
	b = optStrs(b, `,"masked_types":`, r.MaskedTypes)
	b = optStr(b, `,"session_status":`, r.SessionStatus)
	b = optStr(b, `,"reason":`, r.Reason)
	b = optInt(b, `,"frames":`, r.Frames)
	b = optInt(b, `,"bytes_client":`, r.BytesClient)
	b = optInt(b, `,"bytes_server":`, r.BytesServer)
	b = optInt(b, `,"commands":`, r.Commands)
	b = optInt(b, `,"last_seq":`, r.LastSeq)
	b = optStr(b, `,"final_hash":`, r.FinalHash)
	if r.SignatureOK != nil {
		b = strconv.AppendBool(append(b, `,"signature_ok":`...), *r.SignatureOK)
	}
	b = optStrs(b, `,"integrity":`, r.Integrity)
	b = optStr(b, `,"alert":`, r.Alert)
	b = optStr(b, `,"alert_detail":`, r.AlertDetail)
	return append(b, '}')
}

func str(b []byte, s string) []byte { return schemas.AppendJSONString(b, s, true) }

func optStr(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return str(append(b, key...), s)
}

func optStrs(b []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	return schemas.AppendJSONStrings(append(b, key...), ss, true)
}

func optInt(b []byte, key string, v *int64) []byte {
	if v == nil {
		return b
	}
	return strconv.AppendInt(append(b, key...), *v, 10)
}

// appendFloat writes a finite float64 as encoding/json does: 'f' format,
// 'e' below 1e-6 or from 1e21 on, with a two-digit exponent's zero dropped.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
