package postgres

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/schemas/protocol"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
)

// Stitcher stitches one Postgres session's (masked) frames into commands. It follows the
// conversation the way the server does: client messages queue up, and each backend
// message answers the oldest one still waiting. A simple Query is one command however
// many statements it holds (Postgres runs them as one implicit transaction); its rows
// are the sum over its statements. An Execute of the extended protocol is one
// command, with the text of the prepared statement and the parameters of its Bind.
//
// Stitcher is a plain value: its exported fields are its state, saved with the session.
type Stitcher struct {
	Stmts     map[string]*pgStmt   `json:"stmts,omitempty"`
	StmtOrder []string             `json:"stmt_order,omitempty"` // oldest first, for eviction
	Portals   map[string]*pgPortal `json:"portals,omitempty"`
	Queue     []*pgOp              `json:"queue,omitempty"`
	Cols      []string             `json:"cols,omitempty"` // columns of a simple query's current result
	// Frag is saved as "stitch_frag": the conversation's own "frag" (the masker's
	// place in a fragmented message) would otherwise hide it from encoding/json.
	Frag *pgFrag `json:"stitch_frag,omitempty"`
}

type pgStmt struct {
	Text  string           `json:"text"`
	Cols  []string         `json:"cols,omitempty"`
	Masks map[string]int64 `json:"masks,omitempty"`
}

type pgPortal struct {
	Stmt   string           `json:"stmt"`
	Params []string         `json:"params,omitempty"`
	Cols   []string         `json:"cols,omitempty"`
	Masks  map[string]int64 `json:"masks,omitempty"`
}

// pgOp is a client message waiting for the server's answer.
type pgOp struct {
	Op       string           `json:"op"` // query, function, parse, bind, execute, describe_s, describe_p, close_s, close_p, sync
	Name     string           `json:"name,omitempty"`
	Seq      int64            `json:"seq"`
	Text     string           `json:"text,omitempty"` // parse: the statement text, for a failure report
	Cmd      *schemas.Command `json:"cmd,omitempty"`
	DataRows int64            `json:"data_rows,omitempty"`
}

// pgFrag accumulates a fragmented message (bounded; the rest is dropped).
type pgFrag struct {
	Kind  string           `json:"kind"`
	Seq   int64            `json:"seq"`
	TS    time.Time        `json:"ts"`
	Bytes []byte           `json:"bytes,omitempty"`
	Cut   bool             `json:"cut,omitempty"`
	Masks map[string]int64 `json:"masks,omitempty"`
}

// RowColumns implements mask.PGContext: the columns of the DataRows arriving now.
func (p *Stitcher) RowColumns() []string {
	for _, op := range p.Queue {
		switch op.Op {
		case "query", "function":
			return p.Cols
		case "execute":
			if pt := p.Portals[op.Name]; pt != nil {
				if pt.Cols != nil {
					return pt.Cols
				}
				if s := p.Stmts[pt.Stmt]; s != nil {
					return s.Cols
				}
			}
			return nil
		case "parse", "bind", "describe_s", "describe_p", "close_s", "close_p", "sync":
			continue
		}
	}
	return nil
}

// StatementText implements mask.PGContext.
func (p *Stitcher) StatementText(name string) (string, bool) {
	if s := p.Stmts[name]; s != nil {
		return s.Text, true
	}
	return "", false
}

// Frame takes the next frame of the session (already masked) and returns the commands
// it completes.
func (p *Stitcher) Frame(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	lim = lim.WithDefaults()
	payload, ok := p.assemble(f, lim)
	if !ok {
		return nil
	}
	if len(payload) < HeaderLen && f.Kind != StartupMessage && f.Kind != SSLRequest {
		return nil
	}
	body := Body(payload)
	masks, truncated := f.Masks, false
	if p.Frag != nil {
		masks, truncated = p.Frag.Masks, p.Frag.Cut
		if f.Direction == schemas.Client {
			// A command begins with the first fragment of its message.
			first := *f
			first.Seq, first.TS = p.Frag.Seq, p.Frag.TS
			f = &first
		}
		p.Frag = nil
	}
	var out []schemas.Command
	emit := func(c *schemas.Command) {
		if c != nil {
			out = append(out, *c)
		}
	}
	if f.Direction == schemas.Client {
		p.client(f, body, masks, truncated, lim)
	} else {
		p.server(f, body, emit)
	}
	for len(p.Queue) > lim.MaxQueue {
		p.abandonHead(f, "too many messages awaiting an answer", emit)
	}
	return out
}

// assemble returns the whole message for f, gathering fragments (up to a bound).
func (p *Stitcher) assemble(f *schemas.Frame, lim protocol.Limits) ([]byte, bool) {
	if f.Fragment == 0 && f.Final {
		return f.Payload, true
	}
	if f.Fragment == 0 || p.Frag == nil || p.Frag.Kind != f.Kind {
		p.Frag = &pgFrag{Kind: f.Kind, Seq: f.Seq, TS: f.TS, Masks: map[string]int64{}}
	}
	keep := 2*lim.MaxText + 64
	if f.Kind == DataRow || f.Kind == CopyData {
		keep = 64 // only counted
	}
	room := keep - len(p.Frag.Bytes)
	if room < len(f.Payload) {
		p.Frag.Cut = true
	}
	if room > 0 {
		p.Frag.Bytes = append(p.Frag.Bytes, f.Payload[:min(room, len(f.Payload))]...)
	}
	if len(f.Masks) > 0 && p.Frag.Masks == nil {
		p.Frag.Masks = map[string]int64{} // saved state omits an empty map
	}
	for k, v := range f.Masks {
		p.Frag.Masks[k] += v
	}
	if !f.Final {
		return nil, false
	}
	return p.Frag.Bytes, true
}

func (p *Stitcher) client(f *schemas.Frame, body []byte, masks map[string]int64, truncated bool, lim protocol.Limits) {
	switch f.Kind {
	case Query:
		text := cstring(body)
		p.Cols = nil
		p.push(&pgOp{Op: "query", Seq: f.Seq, Cmd: protocol.NewCommand(f, "query", protocol.Clip(text, lim.MaxText, truncated), masks)}, lim)
	case FunctionCall:
		m := &pgproto3.FunctionCall{}
		text := "function call"
		if Decode(m, body) == nil {
			text = fmt.Sprintf("function call (oid %d, %d arguments)", m.Function, len(m.Arguments))
		}
		p.push(&pgOp{Op: "function", Seq: f.Seq, Cmd: protocol.NewCommand(f, "function", text, masks)}, lim)
	case Parse:
		name, rest := cstringNext(body)
		text := cstring(rest)
		text = protocol.Clip(text, lim.MaxText, truncated)
		p.setStmt(name, &pgStmt{Text: text, Masks: masks}, lim)
		p.push(&pgOp{Op: "parse", Name: name, Seq: f.Seq, Text: text}, lim)
	case Bind:
		m := &pgproto3.Bind{}
		pt := &pgPortal{Masks: masks}
		if err := Decode(m, body); err == nil {
			pt.Stmt = m.PreparedStatement
			pt.Params = params(m, lim.MaxText)
		} else {
			portal, rest := cstringNext(body)
			pt.Stmt, _ = cstringNext(rest)
			pt.Params = []string{"(parameters not recorded: message larger than the stitching limit)"}
			m.DestinationPortal = portal
		}
		if p.Portals == nil {
			p.Portals = map[string]*pgPortal{}
		}
		p.Portals[m.DestinationPortal] = pt
		p.push(&pgOp{Op: "bind", Name: m.DestinationPortal, Seq: f.Seq}, lim)
	case Execute:
		name, _ := cstringNext(body)
		text, params, pmasks := fmt.Sprintf("(portal %q: statement not seen)", name), []string(nil), map[string]int64(nil)
		kind := "prepared"
		if pt := p.Portals[name]; pt != nil {
			params, pmasks = append([]string(nil), pt.Params...), pt.Masks
			if s := p.Stmts[pt.Stmt]; s != nil {
				text = s.Text
				c := protocol.NewCommand(f, kind, text, s.Masks)
				c.Params = params
				protocol.AddMasks(c, pmasks)
				p.push(&pgOp{Op: "execute", Name: name, Seq: f.Seq, Cmd: c}, lim)
				return
			}
			text = fmt.Sprintf("(prepared statement %q: text not seen)", pt.Stmt)
		}
		c := protocol.NewCommand(f, kind, text, pmasks)
		c.Params = params
		p.push(&pgOp{Op: "execute", Name: name, Seq: f.Seq, Cmd: c}, lim)
	case Describe:
		p.pushTargeted(f, body, "describe_s", "describe_p", lim)
	case Close:
		p.pushTargeted(f, body, "close_s", "close_p", lim)
	case Sync:
		p.push(&pgOp{Op: "sync", Seq: f.Seq}, lim)
	case CopyFail:
		if op := p.head("query", "execute"); op != nil && op.Cmd != nil {
			op.Cmd.Error = "COPY aborted by the client: " + cstring(body)
		}
	}
}

// pushTargeted queues a Describe or Close: its body is a target byte ('S' statement,
// 'P' portal) and a name, and it waits as stmtOp or portalOp by that target.
func (p *Stitcher) pushTargeted(f *schemas.Frame, body []byte, stmtOp, portalOp string, lim protocol.Limits) {
	if len(body) == 0 {
		return
	}
	name, _ := cstringNext(body[1:])
	op := stmtOp
	if body[0] == 'P' {
		op = portalOp
	}
	p.push(&pgOp{Op: op, Name: name, Seq: f.Seq}, lim)
}

func (p *Stitcher) server(f *schemas.Frame, body []byte, emit func(*schemas.Command)) {
	switch f.Kind {
	case ParseComplete:
		p.pop(f, emit, "parse")
	case BindComplete:
		p.pop(f, emit, "bind")
	case CloseComplete:
		if op := p.pop(f, emit, "close_s", "close_p"); op != nil {
			if op.Op == "close_s" {
				p.dropStmt(op.Name)
			} else {
				delete(p.Portals, op.Name)
			}
		}
	case ParameterDescription:
	case RowDescription:
		cols := rowColumns(body)
		op := p.head("query", "function", "describe_s", "describe_p", "execute")
		switch {
		case op == nil:
		case op.Op == "describe_s":
			if s := p.Stmts[op.Name]; s != nil {
				s.Cols = cols
			}
			p.pop(f, emit, "describe_s")
		case op.Op == "describe_p":
			if pt := p.Portals[op.Name]; pt != nil {
				pt.Cols = cols
			}
			p.pop(f, emit, "describe_p")
		default:
			p.Cols = cols
		}
	case NoData:
		p.pop(f, emit, "describe_s", "describe_p")
	case DataRow:
		if op := p.head("query", "function", "execute"); op != nil {
			op.DataRows++
		}
	case CopyInResponse, CopyOutResponse, CopyBothResponse:
		if op := p.head("query", "execute"); op != nil && op.Cmd != nil {
			op.Cmd.Kind = "copy"
		}
	case CommandComplete:
		op := p.head("query", "function", "execute")
		if op == nil {
			return
		}
		tag := cstring(body)
		rows, ok := tagRows(tag)
		if !ok {
			rows = op.DataRows
		}
		op.DataRows = 0
		op.Cmd.Rows += rows
		protocol.Finish(op.Cmd, f, protocol.StatusOK)
		if op.Op == "execute" {
			p.pop(f, emit, "execute")
			emit(op.Cmd)
			return
		}
		// One statement of a simple query is done; the query ends at ReadyForQuery.
		p.Cols = nil
	case EmptyQueryResponse, PortalSuspended, FunctionCallResponse:
		op := p.head("query", "function", "execute")
		if op == nil {
			return
		}
		if f.Kind == PortalSuspended {
			op.Cmd.Rows += op.DataRows
		}
		if op.Cmd.Status == protocol.StatusIncomplete {
			protocol.Finish(op.Cmd, f, protocol.StatusOK)
		}
		if op.Op == "execute" {
			p.pop(f, emit, "execute")
			emit(op.Cmd)
		}
	case ErrorResponse:
		p.serverError(f, body, emit)
	case ReadyForQuery:
		p.ready(f, body, emit)
	}
}

// serverError fails the operation at the head of the queue. After an error in the
// extended protocol the server skips every message up to the next Sync: an Execute
// in that stretch did not run. If the failure was in a Parse or Bind, the first such
// Execute carries the error; the others are recorded as cancelled.
func (p *Stitcher) serverError(f *schemas.Frame, body []byte, emit func(*schemas.Command)) {
	msg := errorText(body)
	if len(p.Queue) == 0 {
		return
	}
	head := p.Queue[0]
	switch head.Op {
	case "query", "function":
		protocol.Finish(head.Cmd, f, protocol.StatusError)
		head.Cmd.Error = msg
		p.Cols = nil
		return
	case "sync":
		return
	}
	failed := head
	carried := false
	for len(p.Queue) > 0 && p.Queue[0].Op != "sync" {
		op := p.Queue[0]
		p.Queue = p.Queue[1:]
		if op.Op == "parse" && op == failed {
			p.dropStmt(op.Name)
		}
		if op.Op != "execute" {
			continue
		}
		switch {
		case op == failed || !carried:
			protocol.Finish(op.Cmd, f, protocol.StatusError)
			op.Cmd.Error = msg
			carried = true
		default:
			protocol.Finish(op.Cmd, f, protocol.StatusCancelled)
			op.Cmd.Error = "not executed: an earlier message of the same pipeline failed"
		}
		emit(op.Cmd)
	}
	if carried {
		return
	}
	// The failure had no Execute to carry it: record the failed Parse or Bind itself.
	switch failed.Op {
	case "parse", "bind":
		c := &schemas.Command{SessionID: f.SessionID, CommandSeq: failed.Seq, SeqEnd: f.Seq, Protocol: f.Protocol,
			Kind: failed.Op, Status: protocol.StatusError, Error: msg, EndedAt: f.TS}
		if failed.Op == "parse" {
			c.Text = failed.Text
		} else if pt := p.Portals[failed.Name]; pt != nil {
			if s := p.Stmts[pt.Stmt]; s != nil {
				c.Text = s.Text
			}
			c.Params = pt.Params
		}
		c.StartedAt = f.TS
		emit(c)
	}
}

func (p *Stitcher) ready(f *schemas.Frame, body []byte, emit func(*schemas.Command)) {
	for len(p.Queue) > 0 {
		op := p.Queue[0]
		p.Queue = p.Queue[1:]
		switch op.Op {
		case "query", "function":
			if op.Cmd.Status == protocol.StatusIncomplete {
				protocol.Finish(op.Cmd, f, protocol.StatusOK)
			}
			emit(op.Cmd)
			p.Cols = nil
			p.endOfTransaction(body)
			return
		case "sync":
			p.endOfTransaction(body)
			return
		case "execute":
			protocol.Finish(op.Cmd, f, protocol.StatusIncomplete)
			emit(op.Cmd)
		}
	}
	p.endOfTransaction(body)
}

// endOfTransaction drops portals when the server is idle: they do not outlive a
// transaction.
func (p *Stitcher) endOfTransaction(body []byte) {
	if len(body) > 0 && body[0] == 'I' {
		p.Portals = nil
	}
}

// abandonHead drops the oldest waiting message, recording its command as incomplete.
func (p *Stitcher) abandonHead(f *schemas.Frame, why string, emit func(*schemas.Command)) {
	op := p.Queue[0]
	p.Queue = p.Queue[1:]
	if op.Cmd != nil {
		if op.Cmd.Status == protocol.StatusIncomplete && op.Cmd.Error == "" {
			op.Cmd.Error = why
		}
		emit(op.Cmd)
	}
}

// Flush ends the session: commands still waiting are returned as incomplete.
func (p *Stitcher) Flush(f *schemas.Frame, why string) []schemas.Command {
	var out []schemas.Command
	for _, op := range p.Queue {
		if op.Cmd == nil {
			continue
		}
		c := *op.Cmd
		if c.Status == protocol.StatusIncomplete && c.Error == "" {
			c.Error = why
		}
		out = append(out, c)
	}
	p.Queue = nil
	return out
}

func (p *Stitcher) push(op *pgOp, lim protocol.Limits) {
	if op.Cmd != nil {
		held := 0
		for _, q := range p.Queue {
			held += len(q.Text)
			if q.Cmd != nil {
				held += len(q.Cmd.Text)
				for _, prm := range q.Cmd.Params {
					held += len(prm)
				}
			}
		}
		if held > lim.MaxQueueText {
			op.Cmd.Text = protocol.Clip(op.Cmd.Text, 256, false)
			for i, prm := range op.Cmd.Params {
				op.Cmd.Params[i] = protocol.Clip(prm, 64, false)
			}
		}
	}
	p.Queue = append(p.Queue, op)
}

// head returns the first waiting operation if it is one of ops. Statement-level
// bookkeeping (parse, bind…) that a backend message skips over is dropped first: the
// server answers in order, so anything before the answered op was answered already
// or never will be.
func (p *Stitcher) head(ops ...string) *pgOp {
	for _, op := range p.Queue {
		for _, o := range ops {
			if op.Op == o {
				return op
			}
		}
		if op.Op == "sync" || op.Cmd != nil {
			return nil
		}
	}
	return nil
}

// pop removes the first waiting operation of one of the kinds ops, with any
// bookkeeping operations before it, and returns it.
func (p *Stitcher) pop(f *schemas.Frame, emit func(*schemas.Command), ops ...string) *pgOp {
	for i, op := range p.Queue {
		for _, o := range ops {
			if op.Op != o {
				continue
			}
			for _, skipped := range p.Queue[:i] {
				if skipped.Cmd != nil && skipped.Op != "parse" {
					protocol.Finish(skipped.Cmd, f, protocol.StatusIncomplete)
					emit(skipped.Cmd)
				}
			}
			p.Queue = p.Queue[i+1:]
			return op
		}
		if op.Op == "sync" {
			return nil
		}
	}
	return nil
}

func (p *Stitcher) setStmt(name string, s *pgStmt, lim protocol.Limits) {
	if p.Stmts == nil {
		p.Stmts = map[string]*pgStmt{}
	}
	p.dropStmt(name)
	p.Stmts[name] = s
	p.StmtOrder = append(p.StmtOrder, name)
	total := 0
	for _, st := range p.Stmts {
		total += len(st.Text)
	}
	for total > lim.MaxStmtBytes && len(p.StmtOrder) > 1 {
		old := p.StmtOrder[0]
		total -= len(p.Stmts[old].Text)
		p.dropStmt(old)
	}
}

func (p *Stitcher) dropStmt(name string) {
	if _, ok := p.Stmts[name]; !ok {
		return
	}
	delete(p.Stmts, name)
	for i, n := range p.StmtOrder {
		if n == name {
			p.StmtOrder = append(p.StmtOrder[:i], p.StmtOrder[i+1:]...)
			break
		}
	}
}

// params renders Bind parameters: text-format values as they are, binary ones as
// \x-prefixed hex, NULL as NULL.
func params(m *pgproto3.Bind, maxText int) []string {
	out := make([]string, len(m.Parameters))
	for i, v := range m.Parameters {
		switch {
		case v == nil:
			out[i] = "NULL"
		case FormatCode(m.ParameterFormatCodes, i) == 1:
			out[i] = protocol.Clip(`\x`+hex.EncodeToString(v), maxText, false)
		default:
			out[i] = protocol.Clip(string(v), maxText, false)
		}
	}
	return out
}

func rowColumns(body []byte) []string {
	m := &pgproto3.RowDescription{}
	if Decode(m, body) != nil {
		return nil
	}
	cols := make([]string, len(m.Fields))
	for i, fd := range m.Fields {
		cols[i] = string(fd.Name)
	}
	return cols
}

// tagRows reads the row count of a CommandComplete tag ("SELECT 5", "INSERT 0 3",
// "UPDATE 2", "COPY 10"…); ok is false for tags without one ("CREATE TABLE").
func tagRows(tag string) (int64, bool) {
	fields := strings.Fields(tag)
	if len(fields) < 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
	return n, err == nil
}

func errorText(body []byte) string {
	m := &pgproto3.ErrorResponse{}
	if Decode(m, body) != nil {
		return "error (undecodable ErrorResponse)"
	}
	s := m.Severity + " " + m.Code + ": " + m.Message
	if m.Detail != "" {
		s += " (" + m.Detail + ")"
	}
	return s
}

// cstring returns the NUL-terminated string at the start of b (all of b when the
// message was cut short).
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func cstringNext(b []byte) (string, []byte) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:]
		}
	}
	return string(b), nil
}
