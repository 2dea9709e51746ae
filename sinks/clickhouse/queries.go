package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Reads go through FINAL: retried or replayed inserts may leave rows that share a key
// until a merge collapses them, and for sessions FINAL also picks the highest version
// before WHERE filters see the row (docs/storage.md).

const sessionColumns = `session_id, version, protocol, target, gateway_id, issuer, subject, email, name,
groups, token_id, client_addr, started_at, ended_at, status, end_reason, frames, bytes_client,
bytes_server, commands, last_seq, final_hash, signature_ok, integrity`

const commandColumns = `session_id, command_seq, seq_end, protocol, target, subject, channel, kind, text,
params, started_at, ended_at, status, error, rows, exit_status, masks`

const frameColumns = `session_id, seq, ts, direction, protocol, kind, channel, fragment, final, payload,
payload_salt, payload_digest, prev_hash, hash, gateway_id, masks, session_start, denial, session_end, processor_sig`

// The legacy schema (18.16) keeps ts in µs and masks as two arrays.
var (
	legacyCommandColumns = strings.Replace(commandColumns, "masks", "masks_keys, masks_values", 1)
	legacyFrameColumns   = strings.NewReplacer(" ts,", " ts_us,", "masks,", "masks_keys, masks_values,").Replace(frameColumns)
)

func (s *store) commandColumns() string {
	if s.cfg.Schema == SchemaLegacy {
		return legacyCommandColumns
	}
	return commandColumns
}

func (s *store) frameColumns() string {
	if s.cfg.Schema == SchemaLegacy {
		return legacyFrameColumns
	}
	return frameColumns
}

// Frames reads a session in pages: the first small, so that a replay's first
// event comes at once, then up to framesPageMax frames or framesPageBytes of
// payload, whichever comes first (one frame more than the bytes when a single
// fragment is larger). A round trip per 128 frames held long sessions to ~12,000
// frames/s; pages sized by payload keep memory flat however large the frames
// (chDB hands over a whole result at once).
const (
	framesFirstPage = 128
	framesPageMax   = 16384
	framesPageBytes = 8 << 20
)

// TimeParam formats t as a DateTime64(6) query parameter value.
func TimeParam(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// LikeContains returns a LIKE pattern matching s anywhere, lower-cased the way
// ClickHouse's lower() does (ASCII only) so it meets the lower(text) skip indexes.
func LikeContains(s string) string {
	var b strings.Builder
	b.WriteByte('%')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' || c == '_' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('%')
	return b.String()
}

func (s *store) ListSessions(ctx context.Context, f SessionFilter) ([]schemas.Session, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var where []string
	p := Params{"limit": strconv.Itoa(limit)}
	eq := func(col, name, v string) {
		if v != "" {
			where = append(where, fmt.Sprintf("%s = {%s:String}", col, name))
			p[name] = v
		}
	}
	eq("issuer", "issuer", f.Issuer)
	eq("subject", "subject", f.Subject)
	eq("target", "target", f.Target)
	eq("protocol", "protocol", string(f.Protocol))
	eq("status", "status", f.Status)
	if !f.From.IsZero() {
		where = append(where, "started_at >= {from:DateTime64(6, 'UTC')}")
		p["from"] = TimeParam(f.From)
	}
	if !f.To.IsZero() {
		where = append(where, "started_at < {to:DateTime64(6, 'UTC')}")
		p["to"] = TimeParam(f.To)
	}
	if f.Text != "" {
		where = append(where, "session_id IN (SELECT session_id FROM commands WHERE lower(text) LIKE {text:String})")
		p["text"] = LikeContains(f.Text)
	}
	if f.Before != nil {
		where = append(where, "(started_at, session_id) < ({bt:DateTime64(6, 'UTC')}, {bid:String})")
		p["bt"] = TimeParam(f.Before.StartedAt)
		p["bid"] = f.Before.SessionID
	}
	q := "SELECT " + sessionColumns + " FROM sessions FINAL"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_at DESC, session_id DESC LIMIT {limit:UInt32}"
	return s.sessions(ctx, q, p)
}

func (s *store) GetSession(ctx context.Context, id string) (schemas.Session, error) {
	ss, err := s.sessions(ctx, "SELECT "+sessionColumns+" FROM sessions FINAL WHERE session_id = {id:String} LIMIT 1", Params{"id": id})
	if err != nil {
		return schemas.Session{}, err
	}
	if len(ss) == 0 {
		return schemas.Session{}, fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	return ss[0], nil
}

func (s *store) sessions(ctx context.Context, q string, p Params) ([]schemas.Session, error) {
	rows, err := s.conn.Query(ctx, q, p, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: sessions: %w", err)
	}
	defer rows.Close()
	var out []schemas.Session
	for rows.Next() {
		var x schemas.Session
		var version uint64
		var protocol, finalHash string
		if err := rows.Scan(&x.SessionID, &version, &protocol, &x.Target, &x.GatewayID, &x.Issuer, &x.Subject,
			&x.Email, &x.Name, &x.Groups, &x.TokenID, &x.ClientAddr, &x.StartedAt, &x.EndedAt, &x.Status,
			&x.EndReason, &x.Frames, &x.BytesClient, &x.BytesServer, &x.Commands, &x.LastSeq, &finalHash,
			&x.SignatureOK, &x.Integrity); err != nil {
			return nil, fmt.Errorf("clickhouse: sessions: %w", err)
		}
		x.Version = int64(version)
		x.Protocol = schemas.Protocol(protocol)
		x.FinalHash = []byte(finalHash)
		out = append(out, x)
	}
	return out, rows.Err()
}

func (s *store) Commands(ctx context.Context, f CommandFilter) ([]schemas.Command, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	p := Params{"sid": f.SessionID, "from": strconv.FormatInt(f.FromSeq, 10), "limit": strconv.Itoa(limit)}
	q := "SELECT " + s.commandColumns() + " FROM commands FINAL WHERE session_id = {sid:String} AND command_seq >= {from:Int64}"
	if f.Text != "" {
		q += " AND lower(text) LIKE {text:String}"
		p["text"] = LikeContains(f.Text)
	}
	q += " ORDER BY command_seq LIMIT {limit:UInt32}"
	rows, err := s.conn.Query(ctx, q, p, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: commands: %w", err)
	}
	defer rows.Close()
	var out []schemas.Command
	for rows.Next() {
		var c schemas.Command
		var protocol string
		var keys []string
		var vals []int64
		dest := []any{&c.SessionID, &c.CommandSeq, &c.SeqEnd, &protocol, &c.Target, &c.Subject, &c.Channel,
			&c.Kind, &c.Text, &c.Params, &c.StartedAt, &c.EndedAt, &c.Status, &c.Error, &c.Rows, &c.ExitStatus, &c.Masks}
		if s.cfg.Schema == SchemaLegacy {
			dest = append(dest[:len(dest)-1], &keys, &vals)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("clickhouse: commands: %w", err)
		}
		if s.cfg.Schema == SchemaLegacy {
			var err error
			if c.Masks, err = arraysMap(keys, vals); err != nil {
				return nil, fmt.Errorf("clickhouse: command %s/%d: %w", c.SessionID, c.CommandSeq, err)
			}
		}
		c.Protocol = schemas.Protocol(protocol)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *store) Frames(ctx context.Context, sessionID string, from, to int64, fn func(*schemas.Frame) error) error {
	// The next page is read while fn consumes this one: the store's query and the
	// caller's encoding each took about half of a long read, one after the other.
	// The channel is unbuffered, so at most two pages are held at once.
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan framesPageResult)
	complete := false // set before pages closes
	go func() {
		defer close(pages)
		complete = s.readFramePages(ctx, sessionID, from, to, pages)
	}()
	defer func() {
		cancel()
		for range pages { // the reader has stopped once pages is closed
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := ctx.Err(); err != nil {
			return err // a page read ahead may still come after the context ended
		}
		for i := range p.frames {
			if err := fn(&p.frames[i]); err != nil {
				return err
			}
		}
	}
	if !complete {
		return ctx.Err() // the caller's context ended the read
	}
	return nil
}

type framesPageResult struct {
	frames []schemas.Frame
	err    error
}

// readFramePages sends the session's frames with from <= seq <= to to out, a page
// at a time, then an error if one stopped it. It reports whether it went to the
// end (or sent its error); it returns early, false, once ctx is done.
func (s *store) readFramePages(ctx context.Context, sessionID string, from, to int64, out chan<- framesPageResult) bool {
	send := func(r framesPageResult) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	q := "SELECT " + s.frameColumns() + ` FROM frames FINAL
WHERE session_id = {sid:String} AND seq >= {from:Int64} AND seq <= {to:Int64}
ORDER BY seq LIMIT {limit:UInt32}`
	size := framesFirstPage
	for from <= to {
		// Every query covers a window of seqs, not the rest of the session: a server
		// that cannot read in key order sorts all rows the range holds, which made
		// each page of a 1,000,000-frame session cost a read of all that follow.
		end := windowEnd(from, to, size)
		last, n := end, size
		if size != framesFirstPage {
			var err error
			if last, n, err = s.framesPageEnd(ctx, sessionID, from, end, size); err != nil {
				return send(framesPageResult{err: err})
			}
		}
		page := []schemas.Frame(nil)
		if n > 0 {
			var err error
			page, err = s.framesPage(ctx, q, n, Params{
				"sid": sessionID, "from": strconv.FormatInt(from, 10), "to": strconv.FormatInt(last, 10),
				"limit": strconv.Itoa(n),
			})
			if err != nil {
				return send(framesPageResult{err: err})
			}
		}
		size = framesPageMax
		if len(page) > 0 {
			if !send(framesPageResult{frames: page}) {
				return false
			}
			from = last + 1
			continue
		}
		// An empty window is a gap in the seqs (frames deleted or never stored):
		// carry on from the next frame there is.
		next, ok, err := s.nextSeq(ctx, sessionID, end, to)
		if err != nil {
			return send(framesPageResult{err: err})
		}
		if !ok {
			return true
		}
		from = next
	}
	return true
}

// windowEnd is the last seq of a window of size seqs from from, within to.
func windowEnd(from, to int64, size int) int64 {
	if to-from < int64(size) {
		return to
	}
	return from + int64(size) - 1
}

// nextSeq returns the first seq after after and up to to, if there is one.
func (s *store) nextSeq(ctx context.Context, sessionID string, after, to int64) (int64, bool, error) {
	if after >= to {
		return 0, false, nil
	}
	rows, err := s.conn.Query(ctx, `SELECT min(seq), count() FROM frames
WHERE session_id = {sid:String} AND seq > {from:Int64} AND seq <= {to:Int64}`, Params{
		"sid": sessionID, "from": strconv.FormatInt(after, 10), "to": strconv.FormatInt(to, 10),
	}, nil)
	if err != nil {
		return 0, false, fmt.Errorf("clickhouse: frames: %w", err)
	}
	defer rows.Close()
	var next int64
	var n uint64
	if rows.Next() {
		if err := rows.Scan(&next, &n); err != nil {
			return 0, false, fmt.Errorf("clickhouse: frames: %w", err)
		}
	}
	return next, n > 0, rows.Err()
}

// framesPageEnd sizes the next page within from..to: the seq of its last frame
// and its frame count, from the payload sizes of up to limit frames.
func (s *store) framesPageEnd(ctx context.Context, sessionID string, from, to int64, limit int) (last int64, n int, err error) {
	rows, err := s.conn.Query(ctx, `SELECT seq, length(payload) FROM frames FINAL
WHERE session_id = {sid:String} AND seq >= {from:Int64} AND seq <= {to:Int64}
ORDER BY seq LIMIT {limit:UInt32}`, Params{
		"sid": sessionID, "from": strconv.FormatInt(from, 10), "to": strconv.FormatInt(to, 10), "limit": strconv.Itoa(limit),
	}, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("clickhouse: frames: %w", err)
	}
	defer rows.Close()
	sizes := make([]pageSize, 0, limit)
	for rows.Next() {
		var p pageSize
		if err := rows.Scan(&p.seq, &p.bytes); err != nil {
			return 0, 0, fmt.Errorf("clickhouse: frames: %w", err)
		}
		sizes = append(sizes, p)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("clickhouse: frames: %w", err)
	}
	last, n = cutPage(sizes, framesPageBytes)
	return last, n, nil
}

type pageSize struct {
	seq   int64
	bytes uint64
}

// cutPage returns the last seq and the count of the longest prefix of sizes
// within budget bytes, and at least one frame.
func cutPage(sizes []pageSize, budget uint64) (int64, int) {
	var total uint64
	for i, p := range sizes {
		total += p.bytes
		if total > budget && i > 0 {
			return sizes[i-1].seq, i
		}
	}
	if len(sizes) == 0 {
		return 0, 0
	}
	return sizes[len(sizes)-1].seq, len(sizes)
}

// FramesConn is a Conn that can decode a frames read straight into frames,
// without the per-value boxing of Rows.Scan: chDB hands over a whole page at once,
// and its generic decode and scan were the read path's largest Go cost. The
// query selects frameColumns; the frames come back finished (FinishFrame).
type FramesConn interface {
	QueryFrames(ctx context.Context, sql string, params Params, n int) ([]schemas.Frame, error)
}

// FrameColumns lists the columns a frames read selects (the full schema), in order.
func FrameColumns() []string {
	cols := strings.Split(frameColumns, ",")
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	return cols
}

func (s *store) framesPage(ctx context.Context, q string, n int, p Params) ([]schemas.Frame, error) {
	legacy := s.cfg.Schema == SchemaLegacy
	if fc, ok := s.conn.(FramesConn); ok && !legacy {
		out, err := fc.QueryFrames(ctx, q, p, n)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: frames: %w", err)
		}
		return out, nil
	}
	rows, err := s.conn.Query(ctx, q, p, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: frames: %w", err)
	}
	defer rows.Close()
	out := make([]schemas.Frame, 0, n)
	for rows.Next() {
		f, err := ScanFrame(rows, legacy)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// ScanFrame scans the current row of a frames read (frameColumns, or the legacy
// schema's columns) into a frame.
func ScanFrame(rows Rows, legacy bool) (schemas.Frame, error) {
	var f schemas.Frame
	var direction, protocol, start, end, psig string
	var tsUS int64
	var keys []string
	var vals []int64
	ts, masks := []any{&f.TS}, []any{&f.Masks}
	if legacy {
		ts, masks = []any{&tsUS}, []any{&keys, &vals}
	}
	dest := append(append([]any{&f.SessionID, &f.Seq}, ts...), &direction, &protocol, &f.Kind, &f.Channel, &f.Fragment,
		&f.Final, &f.Payload, &f.PayloadSalt, &f.PayloadDigest, &f.PrevHash, &f.Hash, &f.GatewayID)
	dest = append(append(dest, masks...), &start, &f.Denial, &end, &psig)
	if err := rows.Scan(dest...); err != nil {
		return f, fmt.Errorf("clickhouse: frames: %w", err)
	}
	if legacy {
		f.TS = time.UnixMicro(tsUS).UTC()
		var err error
		if f.Masks, err = arraysMap(keys, vals); err != nil {
			return f, fmt.Errorf("clickhouse: frame %s/%d: %w", f.SessionID, f.Seq, err)
		}
	}
	f.Direction, f.Protocol = schemas.Direction(direction), schemas.Protocol(protocol)
	return f, FinishFrame(&f, []byte(start), []byte(end), psig)
}

// FinishFrame sets what a frame's row holds in encoded form: session_start and
// session_end (JSON, empty when absent) and processor_sig; an empty masks map
// becomes nil, as the Avro codecs decode it.
func FinishFrame(f *schemas.Frame, start, end []byte, psig string) error {
	f.ProcessorSig = ParseProcessorSig(psig)
	if len(f.Masks) == 0 {
		f.Masks = nil
	}
	if len(start) > 0 {
		f.Start = new(schemas.SessionStart)
		if err := json.Unmarshal(start, f.Start); err != nil {
			return fmt.Errorf("clickhouse: frame %s/%d session_start: %w", f.SessionID, f.Seq, err)
		}
	}
	if len(end) > 0 {
		f.End = new(schemas.SessionEnd)
		if err := json.Unmarshal(end, f.End); err != nil {
			return fmt.Errorf("clickhouse: frame %s/%d session_end: %w", f.SessionID, f.Seq, err)
		}
	}
	return nil
}

// SQL runs an auditor's statement read-only and returns its rows as a stream: the
// caller writes them out as they come and must Close them. The statement is wrapped
// as a subquery so only a SELECT (or WITH ... SELECT) runs; readonly and the limits
// come with it. A second statement or a SETTINGS clause of its own (which could lift
// readonly or the limits inside the subquery) is refused (checkAuditorSQL).
func (s *store) SQL(ctx context.Context, query string, l Limits) (Rows, error) {
	q, err := checkAuditorSQL(query)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if err := CheckParams(q, nil); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	settings, err := s.sqlSettings(ctx, l.withDefaults())
	if err != nil {
		return nil, err
	}
	return s.conn.Query(ctx, "SELECT * FROM (\n"+q+"\n)", nil, settings)
}

// CollectSQL runs st.SQL and reads the whole result; for tests and small answers.
func CollectSQL(ctx context.Context, st Store, query string, l Limits) (*Result, error) {
	rows, err := st.SQL(ctx, query, l)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &Result{Columns: rows.Columns()}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, vals)
	}
	return res, rows.Err()
}

// sqlSettings returns the per-query settings of a read-only statement. A login
// that may write gets readonly=1 with every statement. A login whose profile is
// already read-only cannot be given readonly=1: ClickHouse refuses to change
// readonly in readonly mode (code 164). Under readonly=2 (tapline_reader's profile)
// writes and DDL are refused all the same and the limits still apply per query;
// under readonly=1 no setting may change, so the profile's own limits apply.
func (s *store) sqlSettings(ctx context.Context, l Limits) (Settings, error) {
	// result_overflow_mode stays at its default, throw: servers before 20.x take
	// only numeric settings over the native protocol.
	limits := Settings{
		"max_execution_time": max(1, int(l.MaxExecutionTime.Seconds())),
		"max_result_rows":    l.MaxRows,
		"max_result_bytes":   int(l.MaxResultBytes),
		"max_memory_usage":   int(l.MaxMemoryBytes),
	}
	ro, err := s.queryString(ctx, "SELECT value FROM system.settings WHERE name = 'readonly'", nil, "0")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read the session's readonly setting: %w", err)
	}
	switch ro {
	case "0":
		limits["readonly"] = 1
		return limits, nil
	case "1":
		return nil, nil
	}
	return limits, nil
}

// queryString runs a query for one string column and returns the value in its last
// row, or def when it returns no rows.
func (s *store) queryString(ctx context.Context, q string, p Params, def string) (string, error) {
	rows, err := s.conn.Query(ctx, q, p, nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	v := def
	for rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return "", err
		}
	}
	return v, rows.Err()
}
