package api

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/tapline/tapline/query/wire"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all" // the protocols sessions are filtered by
	"github.com/tapline/tapline/sinks/clickhouse"
)

// The API's JSON types live in package wire, which clients import.
type (
	Session     = wire.Session
	SessionList = wire.SessionList
	Command     = wire.Command
	CommandList = wire.CommandList
)

// Page sizes.
const (
	defaultSessionsLimit = 100
	maxSessionsLimit     = 1000
	defaultCommandsLimit = 1000
	maxCommandsLimit     = 10000
)

func sessionOut(s *schemas.Session) Session {
	return Session{
		SessionID: s.SessionID, Protocol: string(s.Protocol), Target: s.Target, GatewayID: s.GatewayID,
		Issuer: s.Issuer, Subject: s.Subject, Email: s.Email, Name: s.Name, Groups: nonNil(s.Groups),
		TokenID: s.TokenID, ClientAddr: s.ClientAddr, StartedAt: s.StartedAt, EndedAt: s.EndedAt,
		Status: s.Status, EndReason: s.EndReason, Frames: s.Frames, BytesClient: s.BytesClient,
		BytesServer: s.BytesServer, Commands: s.Commands, LastSeq: s.LastSeq,
		FinalHash: hex.EncodeToString(s.FinalHash), SignatureOK: s.SignatureOK, Integrity: nonNil(s.Integrity),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func commandOut(c *schemas.Command) Command {
	return Command{
		SessionID: c.SessionID, CommandSeq: c.CommandSeq, SeqEnd: c.SeqEnd, Protocol: string(c.Protocol),
		Target: c.Target, Subject: c.Subject, Channel: c.Channel, Kind: c.Kind, Text: c.Text,
		Params: nonNil(c.Params), StartedAt: c.StartedAt, EndedAt: c.EndedAt, Status: c.Status,
		Error: c.Error, Rows: c.Rows, ExitStatus: c.ExitStatus, Masks: c.Masks,
	}
}

func (s *server) listSessions(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	f, err := sessionFilter(q)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if !c.auditor {
		// Others see only their own sessions: asking for someone else's finds nothing.
		if (f.Subject != "" && f.Subject != c.Subject) || (f.Issuer != "" && f.Issuer != c.Issuer) {
			writeJSON(w, http.StatusOK, SessionList{Sessions: []Session{}})
			return
		}
		f.Subject, f.Issuer = c.Subject, c.Issuer
	}
	rows, err := s.store.ListSessions(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := SessionList{Sessions: make([]Session, 0, len(rows))}
	for i := range rows {
		out.Sessions = append(out.Sessions, sessionOut(&rows[i]))
	}
	if len(rows) == f.Limit {
		last := rows[len(rows)-1]
		out.NextCursor = encodeCursor(clickhouse.SessionCursor{StartedAt: last.StartedAt, SessionID: last.SessionID})
	}
	writeJSON(w, http.StatusOK, out)
}

var (
	statuses = map[string]bool{schemas.StatusActive: true, schemas.StatusEnded: true, schemas.StatusDenied: true, schemas.StatusAbandoned: true}
)

func sessionFilter(q url.Values) (clickhouse.SessionFilter, error) {
	f := clickhouse.SessionFilter{
		Subject: q.Get("subject"), Issuer: q.Get("issuer"), Target: q.Get("target"),
		Status: q.Get("status"), Text: q.Get("command"),
	}
	var err error
	if p := q.Get("protocol"); p != "" {
		var ok bool
		if f.Protocol, ok = knownProtocol(p); !ok {
			return f, fmt.Errorf("protocol %q: use one of %s", p, strings.Join(protocolNames(), ", "))
		}
	}
	if f.Status != "" && !statuses[f.Status] {
		return f, fmt.Errorf("status %q: use active, ended, denied or abandoned", f.Status)
	}
	if f.From, err = timeParam(q, "since"); err != nil {
		return f, err
	}
	if f.To, err = timeParam(q, "until"); err != nil {
		return f, err
	}
	if f.Limit, err = limitParam(q, defaultSessionsLimit, maxSessionsLimit); err != nil {
		return f, err
	}
	if cur := q.Get("cursor"); cur != "" {
		c, err := decodeCursor(cur)
		if err != nil {
			return f, err
		}
		f.Before = &c
	}
	return f, nil
}

// timeParam reads an RFC 3339 timestamp or a date (UTC midnight).
func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q: use an RFC 3339 time (2026-01-02T15:04:05Z) or a date (2026-01-02)", name, v)
}

func limitParam(q url.Values, def, most int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, fmt.Errorf("limit %q: a number from 1 to %d", v, most)
	}
	return n, nil
}

type cursorJSON struct {
	T  time.Time `json:"t"`
	ID string    `json:"id"`
}

// encodeCursor makes the opaque keyset cursor of a listing: the last row's
// (started_at, session_id).
func encodeCursor(c clickhouse.SessionCursor) string {
	b, _ := json.Marshal(cursorJSON{T: c.StartedAt.UTC(), ID: c.SessionID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (clickhouse.SessionCursor, error) {
	var c cursorJSON
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" {
		return clickhouse.SessionCursor{}, fmt.Errorf("cursor %q is not one this API returned", s)
	}
	return clickhouse.SessionCursor{StartedAt: c.T, SessionID: c.ID}, nil
}

func (s *server) getSession(w http.ResponseWriter, r *http.Request, c *caller) {
	sess, ok := s.session(w, r, c)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, sessionOut(&sess))
}

func (s *server) listCommands(w http.ResponseWriter, r *http.Request, c *caller) {
	sess, ok := s.session(w, r, c)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := clickhouse.CommandFilter{SessionID: sess.SessionID, Text: q.Get("text")}
	var err error
	if f.FromSeq, err = int64Param(q, "from_seq", 0); err != nil {
		badRequest(w, err.Error())
		return
	}
	if f.Limit, err = limitParam(q, defaultCommandsLimit, maxCommandsLimit); err != nil {
		badRequest(w, err.Error())
		return
	}
	rows, err := s.store.Commands(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := CommandList{Commands: make([]Command, 0, len(rows))}
	for i := range rows {
		out.Commands = append(out.Commands, commandOut(&rows[i]))
	}
	if len(rows) == f.Limit {
		next := rows[len(rows)-1].CommandSeq + 1
		out.NextFromSeq = &next
	}
	writeJSON(w, http.StatusOK, out)
}

func int64Param(q url.Values, name string, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: a non-negative integer", name, v)
	}
	return n, nil
}

// knownProtocol returns the registered protocol named p, in any case.
func knownProtocol(p string) (schemas.Protocol, bool) {
	for _, r := range protocol.All() {
		if strings.EqualFold(string(r.Name()), p) {
			return r.Name(), true
		}
	}
	return "", false
}

// protocolNames lists the registered protocols as the protocol filter takes them.
func protocolNames() []string {
	var out []string
	for _, r := range protocol.All() {
		out = append(out, strings.ToLower(string(r.Name())))
	}
	return out
}
