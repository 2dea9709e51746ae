package api

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tapline/tapline/query/wire"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// The API's JSON types live in package wire, which clients import.
type (
	SQLRequest = wire.SQLRequest
	SQLColumn  = wire.SQLColumn
	SQLResult  = wire.SQLResult
)

// maxSQLBody bounds a SQL request body.
const maxSQLBody = 1 << 20

func (s *server) sql(w http.ResponseWriter, r *http.Request, c *caller) {
	if !c.auditor {
		writeError(w, http.StatusForbidden, "forbidden", "SQL is for members of the "+s.cfg.AuditorsGroup+" group")
		return
	}
	req, err := readSQLRequest(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	recordOf(r.Context()).sql = req.Query
	if !readStatement(req.Query) {
		badRequest(w, "only SELECT (or WITH ... SELECT) statements run here: the SQL endpoint is read-only")
		return
	}
	lim := clickhouse.Limits{MaxRows: s.cfg.SQLMaxRows, MaxExecutionTime: s.cfg.SQLMaxExecutionTime,
		MaxResultBytes: s.cfg.SQLMaxResultBytes, MaxMemoryBytes: s.cfg.SQLMaxMemoryBytes}
	if req.MaxRows > 0 {
		lim.MaxRows = min(lim.MaxRows, req.MaxRows)
	}
	if req.MaxExecutionTimeSeconds > 0 {
		lim.MaxExecutionTime = min(lim.MaxExecutionTime, time.Duration(req.MaxExecutionTimeSeconds*float64(time.Second)))
	}
	// The server-side limit is whole seconds; the context backs it up.
	ctx, cancel := context.WithTimeout(r.Context(), lim.MaxExecutionTime+5*time.Second)
	defer cancel()
	rows, err := s.store.SQL(ctx, req.Query, lim)
	if err != nil {
		s.sqlError(w, r, err)
		return
	}
	defer rows.Close()
	// The first row decides the status: a statement that fails at once gets a proper
	// error status. Later rows are streamed as they come rather than held.
	more := rows.Next()
	if !more && rows.Err() != nil {
		s.sqlError(w, r, rows.Err())
		return
	}
	streamSQL(w, rows, more)
}

// sqlError answers a statement that failed before its first row.
func (s *server) sqlError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "TIMEOUT_EXCEEDED"):
		writeError(w, http.StatusGatewayTimeout, "timeout", "the statement ran past its time limit")
	case r.Context().Err() != nil:
	default:
		// Auditors need ClickHouse's own message (syntax, readonly, limits) to fix
		// their statement; it says nothing they could not query anyway.
		writeError(w, http.StatusBadRequest, "sql_error", err.Error())
	}
}

// streamSQL writes an SQLResult row by row. A statement that fails after its first
// row (a result or memory limit reached midway) cannot change the status any more:
// the body then ends with an "error" member beside the rows sent so far.
func streamSQL(w http.ResponseWriter, rows clickhouse.Rows, more bool) {
	cols := make([]SQLColumn, 0, len(rows.Columns()))
	for _, col := range rows.Columns() {
		cols = append(cols, SQLColumn{Name: col.Name, Type: col.Type})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	bw.WriteString(`{"columns":`)
	enc.Encode(cols)
	bw.WriteString(`,"rows":[`)
	n := 0
	var err error
	for ; more; more = rows.Next() {
		var vals []any
		if vals, err = rows.Values(); err != nil {
			break
		}
		for i, v := range vals {
			vals[i] = jsonSafe(v)
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		enc.Encode(vals)
		n++
	}
	fmt.Fprintf(bw, `],"row_count":%d`, n)
	if err = cmp.Or(err, rows.Err()); err != nil {
		var e ErrorBody
		e.Error.Code, e.Error.Message = "sql_error", "the statement failed after "+strconv.Itoa(n)+" rows: "+err.Error()
		b, _ := json.Marshal(e.Error)
		bw.WriteString(`,"error":`)
		bw.Write(b)
	}
	bw.WriteString("}\n")
	bw.Flush()
}

func readSQLRequest(r *http.Request) (SQLRequest, error) {
	var req SQLRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSQLBody+1))
	if err != nil {
		return req, err
	}
	if len(body) > maxSQLBody {
		return req, errors.New("statement longer than 1 MiB")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "text/plain" || mt == "application/sql" {
		req.Query = string(body)
	} else if err := json.Unmarshal(body, &req); err != nil {
		return req, errors.New(`body: {"query": "SELECT ..."} as JSON, or the statement as text/plain`)
	}
	if req.Query == "" {
		return req, errors.New("no statement")
	}
	return req, nil
}

// readStatement reports whether a statement starts (after comments) with SELECT or
// WITH. The store runs it read-only whatever it is; this only gives writes and DDL a
// clear answer instead of ClickHouse's syntax error from the read-only wrapping.
func readStatement(q string) bool {
	for {
		q = strings.TrimLeft(q, " \t\r\n(")
		switch {
		case strings.HasPrefix(q, "--"):
			_, q, _ = strings.Cut(q, "\n")
		case strings.HasPrefix(q, "/*"):
			_, q, _ = strings.Cut(q, "*/")
		default:
			word := q
			if i := strings.IndexFunc(q, func(r rune) bool { return !unicode.IsLetter(r) }); i >= 0 {
				word = q[:i]
			}
			word = strings.ToLower(word)
			return word == "select" || word == "with"
		}
	}
}

// jsonSafe replaces the float values JSON cannot carry (NaN, ±Inf) with strings,
// recursively in arrays and maps.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return formatFloat(x)
		}
	case float32:
		return jsonSafe(float64(x))
	case []any:
		for i := range x {
			x[i] = jsonSafe(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = jsonSafe(x[k])
		}
	}
	return v
}

func formatFloat(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case x > 0:
		return "inf"
	}
	return "-inf"
}
