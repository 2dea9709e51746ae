package postgres

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"iter"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapline/tapline/schemas/message"
	"github.com/tapline/tapline/schemas/textsafe"
)

// WriteText writes a transcript as text, psql-like: each statement with its
// time, parameters, result tables and tag or error. flush (may be nil) runs after each
// event so a live or large session reaches the reader as it goes.
//
// Everything recorded is escaped (schemas/textsafe): one-line fields entirely, and the
// event's text as a whole, newlines and tabs aside, so no control character an agent
// sent reaches the reader's terminal.
func WriteText(w io.Writer, events iter.Seq2[Event, error], flush func()) error {
	out := bufio.NewWriter(w)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for ev, err := range events {
		if err != nil {
			return err
		}
		buf.Reset()
		writePGEvent(bw, &ev)
		bw.Flush()
		out.WriteString(textsafe.Text(buf.String()))
		if err := out.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	return bw.Flush()
}

func writePGEvent(w *bufio.Writer, ev *Event) {
	ts := ev.Time.UTC().Format(message.TimeLayout)
	switch ev.Type {
	case "session.start", "session.denied":
		writeStart(w, ev)
	case "session.end":
		fmt.Fprintf(w, "-- %s  session ended: %s (%d frames, %d bytes from client, %d from server)\n",
			ts, textsafe.Line(ev.End.Reason), ev.End.Frames, ev.End.BytesClient, ev.End.BytesServer)
	case "startup":
		fmt.Fprintf(w, "-- %s  startup: %s\n", ts, sortedParams(ev.Params))
	case "authenticated":
		fmt.Fprintf(w, "-- %s  authenticated\n", ts)
	case "statement":
		writeStatement(w, ev)
	case "error", "notice":
		fmt.Fprintf(w, "-- %s  seq %d\n%s\n", ts, ev.Seq, ev.Error)
	case "notification":
		fmt.Fprintf(w, "-- %s  notification %s\n", ts, textsafe.Line(ev.Message))
	case "terminate":
		fmt.Fprintf(w, "-- %s  client disconnected\n", ts)
	case "note":
		fmt.Fprintf(w, "-- %s  note (seq %d): %s\n", ts, ev.Seq, textsafe.Line(ev.Message))
	}
}

func writeStart(w *bufio.Writer, ev *Event) {
	s := ev.Start
	ts := ev.Time.UTC().Format(message.TimeLayout)
	if s == nil {
		fmt.Fprintf(w, "-- %s  %s\n", ts, ev.Type)
		return
	}
	fmt.Fprintf(w, "-- %s  %s\n", ts, message.DescribeStart(s))
	if ev.Type == "session.denied" {
		fmt.Fprintf(w, "-- denied: %s\n", textsafe.Line(ev.Message))
	}
}

// describeStart says who started a session, where, and from where, escaped for one line.

func sortedParams(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = textsafe.Line(k + "=" + p[k])
	}
	return strings.Join(parts, " ")
}

func writeStatement(w *bufio.Writer, ev *Event) {
	st := ev.Statement
	fmt.Fprintf(w, "\n-- %s  seq %d..%d  %s\n", st.Start.UTC().Format(message.TimeLayout), ev.Seq, st.SeqEnd, duration(st))
	text := strings.TrimRight(st.Text, " \t\r\n")
	fmt.Fprintln(w, text)
	for i, p := range st.Params {
		fmt.Fprintf(w, "-- $%d = %s\n", i+1, textsafe.Line(quoteParam(p)))
	}
	if st.Masked {
		fmt.Fprintln(w, "-- (values masked)")
	}
	for _, r := range st.Results {
		writeResult(w, r)
	}
	for _, n := range st.Notices {
		fmt.Fprintln(w, n)
	}
	if st.Error != nil {
		fmt.Fprintln(w, st.Error)
	}
	if st.Cancelled {
		fmt.Fprintln(w, "-- not executed: an earlier message of the same pipeline failed")
	}
}

func duration(st *Statement) string {
	if st.End.IsZero() {
		return "(no response)"
	}
	return (time.Duration(st.Duration * float64(time.Millisecond))).Round(time.Microsecond).String()
}

func quoteParam(p *string) string {
	if p == nil {
		return "NULL"
	}
	return "'" + strings.ReplaceAll(*p, "'", "''") + "'"
}

func writeResult(w *bufio.Writer, r *Result) {
	if len(r.Columns) > 0 {
		writeTable(w, r)
	}
	if r.CopyBytes > 0 {
		fmt.Fprintf(w, "(COPY data: %d bytes)\n", r.CopyBytes)
	}
	switch {
	case r.Empty:
		fmt.Fprintln(w, "(empty query)")
	case r.Suspended:
		fmt.Fprintln(w, "(portal suspended at the row limit)")
	case r.Tag != "":
		fmt.Fprintln(w, textsafe.Line(r.Tag))
	}
}

func writeTable(w *bufio.Writer, r *Result) {
	cells := make([][]string, 0, len(r.Rows)+1)
	head := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		head[i] = textsafe.Line(c.Name)
	}
	cells = append(cells, head)
	for _, row := range r.Rows {
		line := make([]string, len(r.Columns))
		for i := range line {
			line[i] = "NULL"
			if i < len(row) && row[i] != nil {
				line[i] = textsafe.Line(*row[i])
			}
		}
		cells = append(cells, line)
	}
	widths := make([]int, len(head))
	for _, line := range cells {
		for i, c := range line {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for n, line := range cells {
		for i, c := range line {
			if i > 0 {
				w.WriteString(" | ")
			} else {
				w.WriteString(" ")
			}
			w.WriteString(c + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
		}
		w.WriteString("\n")
		if n == 0 {
			for i, wd := range widths {
				if i > 0 {
					w.WriteString("+")
				}
				w.WriteString(strings.Repeat("-", wd+2))
			}
			w.WriteString("\n")
		}
	}
	if r.Truncated {
		fmt.Fprintf(w, "(%d rows, first %d shown)\n", r.RowCount, len(r.Rows))
	} else if r.RowCount == 1 {
		fmt.Fprintln(w, "(1 row)")
	} else {
		fmt.Fprintf(w, "(%d rows)\n", r.RowCount)
	}
}
