// Package wire holds the JSON types of the query API (docs/api.md): what the
// server writes and clients read. It depends on no store, Kafka or OIDC library,
// so a client (query/client) can import it without them.
package wire

import (
	"time"

	"github.com/tapline/tapline/schemas"
)

// Session is a session summary as the API returns it.
type Session struct {
	SessionID   string     `json:"session_id"`
	Protocol    string     `json:"protocol"`
	Target      string     `json:"target"`
	GatewayID   string     `json:"gateway_id"`
	Issuer      string     `json:"issuer"`
	Subject     string     `json:"subject"`
	Email       string     `json:"email,omitempty"`
	Name        string     `json:"name,omitempty"`
	Groups      []string   `json:"groups"`
	TokenID     string     `json:"token_id,omitempty"`
	ClientAddr  string     `json:"client_addr"`
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at"`
	Status      string     `json:"status"`
	EndReason   string     `json:"end_reason,omitempty"`
	Frames      int64      `json:"frames"`
	BytesClient int64      `json:"bytes_client"`
	BytesServer int64      `json:"bytes_server"`
	Commands    int64      `json:"commands"`
	LastSeq     int64      `json:"last_seq"`
	FinalHash   string     `json:"final_hash,omitempty"`
	SignatureOK *bool      `json:"signature_ok"`
	Integrity   []string   `json:"integrity"`
}

// SessionList is one page of a session search.
type SessionList struct {
	Sessions []Session `json:"sessions"`
	// NextCursor continues the listing (pass it as cursor); absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Command is a stitched command as the API returns it.
type Command struct {
	SessionID  string           `json:"session_id"`
	CommandSeq int64            `json:"command_seq"`
	SeqEnd     int64            `json:"seq_end"`
	Protocol   string           `json:"protocol"`
	Target     string           `json:"target"`
	Subject    string           `json:"subject"`
	Channel    int64            `json:"channel"`
	Kind       string           `json:"kind"`
	Text       string           `json:"text"`
	Params     []string         `json:"params"`
	StartedAt  time.Time        `json:"started_at"`
	EndedAt    time.Time        `json:"ended_at"`
	Status     string           `json:"status"`
	Error      string           `json:"error,omitempty"`
	Rows       int64            `json:"rows"`
	ExitStatus *int32           `json:"exit_status,omitempty"`
	Masks      map[string]int64 `json:"masks,omitempty"`
}

// CommandList is one page of a session's commands.
type CommandList struct {
	Commands []Command `json:"commands"`
	// NextFromSeq continues the listing (pass it as from_seq); absent on the last page.
	NextFromSeq *int64 `json:"next_from_seq,omitempty"`
}

// ErrorBody is every error response: {"error": {"code": ..., "message": ...}}.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Frame is a frame as the frames endpoint streams it: bytes fields are exact
// (payload base64, hashes, salt and digest hex), so a client can re-verify the chain.
type Frame struct {
	SessionID     string                `json:"session_id"`
	Seq           int64                 `json:"seq"`
	TS            time.Time             `json:"ts"`
	Direction     string                `json:"direction"`
	Protocol      string                `json:"protocol"`
	Kind          string                `json:"kind"`
	Channel       int64                 `json:"channel"`
	Fragment      int32                 `json:"fragment"`
	Final         bool                  `json:"final"`
	Payload       []byte                `json:"payload"`
	PayloadSalt   string                `json:"payload_salt"`
	PayloadDigest string                `json:"payload_digest"`
	PrevHash      string                `json:"prev_hash"`
	Hash          string                `json:"hash"`
	GatewayID     string                `json:"gateway_id"`
	Masks         map[string]int64      `json:"masks,omitempty"`
	Start         *schemas.SessionStart `json:"start,omitempty"`
	Denial        string                `json:"denial,omitempty"`
	End           *SessionEnd           `json:"end,omitempty"`
}

// SessionEnd is a session.end record with its hashes and signature in hex.
type SessionEnd struct {
	Reason      string `json:"reason"`
	LastSeq     int64  `json:"last_seq"`
	Frames      int64  `json:"frames"`
	BytesClient int64  `json:"bytes_client"`
	BytesServer int64  `json:"bytes_server"`
	FinalHash   string `json:"final_hash"`
	Signature   string `json:"signature"`
	GatewayKey  string `json:"gateway_key"`
}

// SQLRequest is the body of POST /api/v1/sql (or send the statement as text/plain).
type SQLRequest struct {
	Query string `json:"query"`
	// MaxRows and MaxExecutionTimeSeconds may lower the server's limits, not raise them.
	MaxRows                 int     `json:"max_rows,omitempty"`
	MaxExecutionTimeSeconds float64 `json:"max_execution_time,omitempty"`
}

// SQLColumn names a result column and its ClickHouse type.
type SQLColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// SQLResult is the answer to a read-only statement.
type SQLResult struct {
	Columns  []SQLColumn `json:"columns"`
	Rows     [][]any     `json:"rows"`
	RowCount int         `json:"row_count"`
	// Error is set when the statement failed after rows were already sent (the
	// status is 200 by then): the rows are incomplete.
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}
