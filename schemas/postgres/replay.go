package postgres

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/message"
	"github.com/tapline/tapline/schemas/protocol"
)

// Defaults for protocol.ReplayOptions.
const (
	DefaultMaxRows      = 100
	DefaultMaxCellBytes = 4096
	// maxPrepared bounds the prepared statements and portals tracked per session;
	// clients that never Close their statements cannot grow memory past it.
	maxPrepared = 10000
)

// replayDefaults fills o's zero fields.
func replayDefaults(o protocol.ReplayOptions) protocol.ReplayOptions {
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.MaxCellBytes <= 0 {
		o.MaxCellBytes = DefaultMaxCellBytes
	}
	return o
}

// Event is one entry of a Postgres transcript.
type Event struct {
	// Type is one of session.start, session.denied, session.end, startup,
	// authenticated, statement, error, notice, notification, terminate, note.
	Type      string                `json:"type"`
	Seq       int64                 `json:"seq"`
	Time      time.Time             `json:"ts"`
	Start     *schemas.SessionStart `json:"start,omitempty"`
	End       *message.SessionEnd   `json:"end,omitempty"`
	Params    map[string]string     `json:"params,omitempty"`
	Statement *Statement            `json:"statement,omitempty"`
	Error     *PGError              `json:"error,omitempty"`
	Message   string                `json:"message,omitempty"`
}

// Statement is one statement the client ran: a simple Query (which may hold several
// SQL statements and so several results) or an extended-protocol Execute.
type Statement struct {
	Protocol string    `json:"protocol"` // simple | extended
	Text     string    `json:"text"`
	Name     string    `json:"name,omitempty"` // prepared statement name
	Params   []*string `json:"params,omitempty"`
	Results  []*Result `json:"results,omitempty"`
	Error    *PGError  `json:"error,omitempty"`
	Notices  []string  `json:"notices,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Duration float64   `json:"duration_ms"`
	SeqEnd   int64     `json:"seq_end"`
	Masked   bool      `json:"masked,omitempty"` // some of its frames were masked
	// Cancelled: the server skipped it, an earlier message of its pipeline having
	// failed (the processors' command status "cancelled").
	Cancelled bool `json:"cancelled,omitempty"`
}

// Result is one result of a statement: its columns, the first rows, and the tag.
type Result struct {
	Columns   []Column    `json:"columns,omitempty"`
	Rows      [][]*string `json:"rows,omitempty"`
	RowCount  int64       `json:"row_count"` // rows the server sent
	Truncated bool        `json:"truncated,omitempty"`
	Tag       string      `json:"tag,omitempty"`
	Suspended bool        `json:"suspended,omitempty"` // portal suspended at Execute's row limit
	Empty     bool        `json:"empty,omitempty"`     // empty query string
	CopyBytes int64       `json:"copy_bytes,omitempty"`
	done      bool
}

// Column describes one result column.
type Column struct {
	Name    string `json:"name"`
	TypeOID uint32 `json:"type_oid"`
	Type    string `json:"type,omitempty"`
}

// PGError is an ErrorResponse or NoticeResponse.
type PGError struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Detail   string `json:"detail,omitempty"`
	Hint     string `json:"hint,omitempty"`
	Position int32  `json:"position,omitempty"`
}

func (e *PGError) String() string {
	s := fmt.Sprintf("%s:  %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
	if e.Detail != "" {
		s += "\nDETAIL:  " + e.Detail
	}
	if e.Hint != "" {
		s += "\nHINT:  " + e.Hint
	}
	return s
}

// Events turns a Postgres session's frames into a transcript. Statements are
// delivered when they complete (CommandComplete for an Execute, ReadyForQuery for a
// simple Query, or an error).
func Events(frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions) iter.Seq2[Event, error] {
	opt = replayDefaults(opt)
	return func(yield func(Event, error) bool) {
		st := &pgState{opt: opt, stmts: map[string]*prepared{}, portals: map[string]*portal{}}
		for m, err := range message.Reassemble(frames, opt.MaxMessageBytes) {
			if err != nil {
				yield(Event{}, err)
				return
			}
			st.out = st.out[:0]
			st.message(&m)
			for _, ev := range st.out {
				if !yield(ev, nil) {
					return
				}
			}
		}
		// A statement still waiting for its response: the session is live or was cut.
		for _, o := range st.queue {
			if o.st != nil && (o.kind == 'Q' || o.kind == 'E') {
				o.st.Notices = append(o.st.Notices, "no response recorded (yet)")
				if !yield(Event{Type: "statement", Seq: o.seq, Time: o.st.Start, Statement: o.st}, nil) {
					return
				}
			}
		}
	}
}

type prepared struct {
	text    string
	oids    []uint32
	columns []pgproto3.FieldDescription // from Describe('S'); formats unknown there
}

type portal struct {
	stmt    *prepared
	name    string
	params  []*string
	formats []int16 // result format codes from Bind
	columns []pgproto3.FieldDescription
}

// op is a client message still waiting for its server response; Postgres answers
// messages in the order it received them, which is how responses are matched.
type op struct {
	kind   byte // 'P' Parse, 'B' Bind, 'D' Describe, 'E' Execute, 'C' Close, 'S' Sync, 'Q' Query
	seq    int64
	target byte // Describe/Close: 'S' or 'P'
	name   string
	parse  *prepared
	portal *portal
	st     *Statement
	// lastSeq and lastTS are the last response to a Query so far.
	lastSeq int64
	lastTS  time.Time
}

type pgState struct {
	opt     protocol.ReplayOptions
	stmts   map[string]*prepared
	portals map[string]*portal
	queue   []*op
	out     []Event
	copying *op // Query or Execute whose COPY is in progress
}

func (s *pgState) emit(ev Event) { s.out = append(s.out, ev) }

func (s *pgState) note(m *message.Message, format string, args ...any) {
	s.emit(Event{Type: "note", Seq: m.Seq, Time: m.TS, Message: fmt.Sprintf(format, args...)})
}

func (s *pgState) message(m *message.Message) {
	if m.Note != "" {
		s.note(m, "%s", m.Note)
	}
	switch m.Kind {
	case schemas.KindSessionStart:
		s.emit(Event{Type: "session.start", Seq: m.Seq, Time: m.TS, Start: m.Start})
		return
	case schemas.KindSessionDenied:
		s.emit(Event{Type: "session.denied", Seq: m.Seq, Time: m.TS, Start: m.Start, Message: m.Denial})
		return
	case schemas.KindSessionEnd:
		s.emit(Event{Type: "session.end", Seq: m.Seq, Time: m.TS, End: message.End(m.End)})
		return
	}
	if m.Withheld {
		s.note(m, "%s at seq %d: payload withheld (the processors failed on it; see its processing_failed alert)", m.Kind, m.Seq)
		return
	}
	var err error
	if m.Direction == schemas.Client {
		err = s.client(m)
	} else {
		err = s.server(m)
	}
	if err != nil {
		s.note(m, "%s at seq %d: %v", m.Kind, m.Seq, err)
	}
}

type decoder interface{ Decode([]byte) error }

// decode checks a wire message's type byte and length and decodes its body.
func decode(m *message.Message, typ byte, into decoder) error {
	b, err := CheckedBodyOf(m.Payload, typ)
	if err != nil {
		return err
	}
	return Decode(into, b)
}

func (s *pgState) client(m *message.Message) error {
	switch m.Kind {
	case StartupMessage:
		if len(m.Payload) < 8 {
			return errors.New("startup message too short")
		}
		var sm pgproto3.StartupMessage
		if err := Decode(&sm, m.Payload[4:]); err != nil {
			return err
		}
		s.emit(Event{Type: "startup", Seq: m.Seq, Time: m.TS, Params: sm.Parameters})
	case Query:
		var q pgproto3.Query
		if err := decode(m, 'Q', &q); err != nil {
			return err
		}
		s.push(&op{kind: 'Q', seq: m.Seq, st: &Statement{Protocol: "simple", Text: q.String, Start: m.TS, Masked: m.Masked}})
	case Parse:
		var p pgproto3.Parse
		if err := decode(m, 'P', &p); err != nil {
			return err
		}
		ps := &prepared{text: p.Query, oids: p.ParameterOIDs}
		if len(s.stmts) < maxPrepared || p.Name == "" {
			s.stmts[p.Name] = ps
		}
		s.push(&op{kind: 'P', seq: m.Seq, name: p.Name, parse: ps})
	case Bind:
		return s.bind(m)
	case Describe:
		var d pgproto3.Describe
		if err := decode(m, 'D', &d); err != nil {
			return err
		}
		s.push(&op{kind: 'D', seq: m.Seq, target: d.ObjectType, name: d.Name})
	case Execute:
		var e pgproto3.Execute
		if err := decode(m, 'E', &e); err != nil {
			return err
		}
		p := s.portals[e.Portal]
		st := &Statement{Protocol: "extended", Start: m.TS, Masked: m.Masked}
		if p != nil {
			st.Text, st.Name, st.Params = p.stmt.text, p.name, p.params
		} else {
			st.Text = fmt.Sprintf("(execute of unknown portal %q)", e.Portal)
		}
		s.push(&op{kind: 'E', seq: m.Seq, portal: p, st: st})
	case Close:
		var c pgproto3.Close
		if err := decode(m, 'C', &c); err != nil {
			return err
		}
		if c.ObjectType == 'S' {
			delete(s.stmts, c.Name)
		} else {
			delete(s.portals, c.Name)
		}
		s.push(&op{kind: 'C', seq: m.Seq})
	case Sync:
		s.push(&op{kind: 'S', seq: m.Seq})
	case CopyData:
		if s.copying != nil {
			s.copyResult().CopyBytes += int64(len(Body(m.Payload)))
		}
	case CopyFail:
		var c pgproto3.CopyFail
		if err := decode(m, 'f', &c); err == nil && s.copying != nil {
			s.copying.st.Notices = append(s.copying.st.Notices, "client aborted COPY: "+c.Message)
		}
	case Terminate:
		s.emit(Event{Type: "terminate", Seq: m.Seq, Time: m.TS})
	case FunctionCall:
		var fc pgproto3.FunctionCall
		if err := decode(m, 'F', &fc); err != nil {
			return err
		}
		s.push(&op{kind: 'Q', seq: m.Seq, st: &Statement{Protocol: "function-call", Text: fmt.Sprintf("(function call, oid %d, %d arguments)", fc.Function, len(fc.Arguments)), Start: m.TS}})
	}
	// PasswordMessage and SASL responses carry the agent's token: never shown.
	// SSLRequest, GSSEncRequest, CancelRequest, Flush and CopyDone need no entry.
	return nil
}

func (s *pgState) bind(m *message.Message) error {
	var b pgproto3.Bind
	if err := decode(m, 'B', &b); err != nil {
		return err
	}
	ps := s.stmts[b.PreparedStatement]
	if ps == nil {
		ps = &prepared{text: fmt.Sprintf("(unknown prepared statement %q)", b.PreparedStatement)}
	}
	p := &portal{stmt: ps, name: b.PreparedStatement, formats: b.ResultFormatCodes}
	p.params = make([]*string, len(b.Parameters))
	for i, v := range b.Parameters {
		if v == nil {
			continue
		}
		var oid uint32
		if i < len(ps.oids) {
			oid = ps.oids[i]
		}
		txt := s.cell(formatValue(v, oid, FormatCode(b.ParameterFormatCodes, i)))
		p.params[i] = &txt
	}
	if len(s.portals) < maxPrepared || b.DestinationPortal == "" {
		s.portals[b.DestinationPortal] = p
	}
	s.push(&op{kind: 'B', seq: m.Seq, portal: p})
	return nil
}

func (s *pgState) push(o *op) {
	// A session pipelining without ever reading responses cannot grow this without
	// bound: past the limit the oldest entries are given up.
	if len(s.queue) >= maxPrepared {
		s.queue = s.queue[1:]
	}
	s.queue = append(s.queue, o)
}

// front returns the oldest pending op of one of kinds, dropping ops ahead of it whose
// responses were never recorded (a protocol violation, or a partial recording).
func (s *pgState) front(kinds string) *op {
	for i, o := range s.queue {
		if strings.IndexByte(kinds, o.kind) >= 0 {
			s.queue = s.queue[i:]
			return o
		}
	}
	return nil
}

// find returns the oldest pending op of one of kinds and leaves the queue as is.
func (s *pgState) find(kinds string) *op {
	for _, o := range s.queue {
		if strings.IndexByte(kinds, o.kind) >= 0 {
			return o
		}
	}
	return nil
}

func (s *pgState) pop() { s.queue = s.queue[1:] }

func (s *pgState) cell(v string) string {
	if len(v) <= s.opt.MaxCellBytes {
		return v
	}
	cut := s.opt.MaxCellBytes
	for cut > 0 && !isRuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + fmt.Sprintf("… (%d bytes)", len(v))
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (s *pgState) server(m *message.Message) error {
	switch m.Kind {
	case "AuthenticationOk":
		s.emit(Event{Type: "authenticated", Seq: m.Seq, Time: m.TS})
	case ParseComplete:
		if s.front("P") != nil {
			s.pop()
		}
	case BindComplete:
		if s.front("B") != nil {
			s.pop()
		}
	case CloseComplete:
		if s.front("C") != nil {
			s.pop()
		}
	case ParameterDescription:
		// Part of a Describe('S') answer (its RowDescription/NoData completes it): the
		// parameter types the server inferred, needed to read binary Bind values when
		// the client's Parse left them unspecified, as pgx does.
		var pd pgproto3.ParameterDescription
		if err := decode(m, 't', &pd); err != nil {
			return err
		}
		if o := s.find("D"); o != nil && o.target == 'S' {
			if ps := s.stmts[o.name]; ps != nil {
				ps.oids = pd.ParameterOIDs
			}
		}
	case NoData:
		if s.front("D") != nil {
			s.pop()
		}
	case RowDescription:
		return s.rowDescription(m)
	case DataRow:
		return s.dataRow(m)
	case CommandComplete:
		var c pgproto3.CommandComplete
		if err := decode(m, 'C', &c); err != nil {
			return err
		}
		s.complete(m, func(r *Result) { r.Tag = string(c.CommandTag) })
	case EmptyQueryResponse:
		s.complete(m, func(r *Result) { r.Empty = true })
	case PortalSuspended:
		s.complete(m, func(r *Result) { r.Suspended = true })
	case CopyInResponse, CopyOutResponse, CopyBothResponse:
		s.copying = s.find("QE")
		if s.copying != nil {
			s.copyResult()
		}
	case CopyData:
		if s.copying != nil {
			s.copyResult().CopyBytes += int64(len(Body(m.Payload)))
		}
	case ErrorResponse:
		var e pgproto3.ErrorResponse
		if err := decode(m, 'E', &e); err != nil {
			return err
		}
		s.errorResponse(m, pgError(&e))
	case NoticeResponse:
		var n pgproto3.NoticeResponse
		if err := decode(m, 'N', &n); err != nil {
			return err
		}
		e := (*pgproto3.ErrorResponse)(&n)
		if o := s.find("QE"); o != nil {
			o.st.Notices = append(o.st.Notices, pgError(e).String())
			return nil
		}
		s.emit(Event{Type: "notice", Seq: m.Seq, Time: m.TS, Error: pgError(e)})
	case NotificationResponse:
		var n pgproto3.NotificationResponse
		if err := decode(m, 'A', &n); err != nil {
			return err
		}
		s.emit(Event{Type: "notification", Seq: m.Seq, Time: m.TS, Message: fmt.Sprintf("%s: %s (pid %d)", n.Channel, n.Payload, n.PID)})
	case ReadyForQuery:
		s.readyForQuery(m)
	}
	return nil
}

func pgError(e *pgproto3.ErrorResponse) *PGError {
	sev := e.Severity
	if e.SeverityUnlocalized != "" {
		sev = e.SeverityUnlocalized
	}
	return &PGError{Severity: sev, Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint, Position: e.Position}
}

func (s *pgState) rowDescription(m *message.Message) error {
	var rd pgproto3.RowDescription
	if err := decode(m, 'T', &rd); err != nil {
		return err
	}
	o := s.front("DQE")
	switch {
	case o == nil:
		return errors.New("no statement waiting for it")
	case o.kind == 'D':
		s.pop()
		if o.target == 'S' {
			if ps := s.stmts[o.name]; ps != nil {
				ps.columns = rd.Fields
			}
		} else if p := s.portals[o.name]; p != nil {
			p.columns = rd.Fields
		}
	default:
		o.st.Results = append(o.st.Results, &Result{Columns: columns(rd.Fields)})
	}
	return nil
}

func columns(fields []pgproto3.FieldDescription) []Column {
	cols := make([]Column, len(fields))
	for i, f := range fields {
		cols[i] = Column{Name: string(f.Name), TypeOID: f.DataTypeOID, Type: typeNames[f.DataTypeOID]}
	}
	return cols
}

// current returns the result rows and tags go to: the last one if still open, else
// a new one (an Execute's columns come from an earlier Describe).
func (s *pgState) current(o *op) *Result {
	if n := len(o.st.Results); n > 0 && !o.st.Results[n-1].done {
		return o.st.Results[n-1]
	}
	r := &Result{}
	if o.kind == 'E' && o.portal != nil {
		fields := o.portal.columns
		if fields == nil {
			fields = o.portal.stmt.columns
		}
		r.Columns = columns(fields)
	}
	o.st.Results = append(o.st.Results, r)
	return r
}

func (s *pgState) copyResult() *Result { return s.current(s.copying) }

func (s *pgState) dataRow(m *message.Message) error {
	o := s.front("QE")
	if o == nil {
		return errors.New("no statement waiting for it")
	}
	r := s.current(o)
	r.RowCount++
	o.st.Masked = o.st.Masked || m.Masked
	if len(r.Rows) >= s.opt.MaxRows {
		r.Truncated = true
		return nil
	}
	var dr pgproto3.DataRow
	if err := decode(m, 'D', &dr); err != nil {
		return err
	}
	row := make([]*string, len(dr.Values))
	for i, v := range dr.Values {
		if v == nil {
			continue
		}
		oid, fc := s.columnType(o, r, i)
		txt := s.cell(formatValue(v, oid, fc))
		row[i] = &txt
	}
	r.Rows = append(r.Rows, row)
	return nil
}

// columnType returns a result column's type and wire format: RowDescription from a
// Query or Describe('P') says the format; after Describe('S') the Bind says it.
func (s *pgState) columnType(o *op, r *Result, i int) (uint32, int16) {
	var oid uint32
	if i < len(r.Columns) {
		oid = r.Columns[i].TypeOID
	}
	if o.kind != 'E' || o.portal == nil {
		return oid, 0
	}
	if f := o.portal.columns; i < len(f) {
		return oid, f[i].Format
	}
	return oid, FormatCode(o.portal.formats, i)
}

func (s *pgState) complete(m *message.Message, set func(*Result)) {
	o := s.front("QE")
	if o == nil {
		return
	}
	r := s.current(o)
	set(r)
	r.done = true
	o.lastSeq, o.lastTS = m.SeqEnd, m.TS
	if o.kind == 'E' {
		s.pop()
		s.finish(o, m)
	}
	if s.copying == o {
		s.copying = nil
	}
}

func (s *pgState) finish(o *op, m *message.Message) {
	o.st.End = m.TS
	o.st.SeqEnd = m.SeqEnd
	o.st.Duration = float64(m.TS.Sub(o.st.Start).Microseconds()) / 1000
	s.emit(Event{Type: "statement", Seq: o.seq, Time: o.st.Start, Statement: o.st})
}

// errorResponse attaches the error to the statement it answers. In the extended
// protocol the server then skips everything up to Sync: the first Execute in that
// stretch carries the error (a Parse or Bind failing fails the Execute it was for),
// the later ones are shown as cancelled, as the processors stitch them.
func (s *pgState) errorResponse(m *message.Message, e *PGError) {
	var o *op
	if len(s.queue) > 0 {
		o = s.queue[0]
	}
	if o == nil || o.kind == 'S' {
		s.emit(Event{Type: "error", Seq: m.Seq, Time: m.TS, Error: e})
		return
	}
	s.copying = nil
	if o.kind == 'Q' {
		o.st.Error = e
		o.lastSeq, o.lastTS = m.SeqEnd, m.TS
		return
	}
	carried := false
	for len(s.queue) > 0 && s.queue[0].kind != 'S' {
		x := s.queue[0]
		s.pop()
		if x.kind != 'E' {
			continue
		}
		if !carried {
			x.st.Error, carried = e, true
		} else {
			x.st.Cancelled = true
		}
		s.finish(x, m)
	}
	if carried {
		return
	}
	st := &Statement{Protocol: "extended", Text: "(describe or close)", Start: m.TS, Error: e}
	switch {
	case o.kind == 'P':
		st.Text = o.parse.text
	case o.kind == 'B' && o.portal != nil:
		st.Text, st.Name, st.Params = o.portal.stmt.text, o.portal.name, o.portal.params
	}
	s.finish(&op{seq: o.seq, st: st}, m)
}

func (s *pgState) readyForQuery(m *message.Message) {
	o := s.front("QS")
	if o == nil {
		return
	}
	s.pop()
	if o.kind == 'Q' {
		// A simple query ends at its last result or error, as its command does; the
		// ReadyForQuery after it belongs to no statement.
		if o.lastTS.IsZero() {
			o.lastSeq, o.lastTS = m.SeqEnd, m.TS
		}
		s.finish(o, &message.Message{Seq: o.lastSeq, SeqEnd: o.lastSeq, TS: o.lastTS})
	}
}
