package postgres

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// sql masks the text of a Query or Parse with the detectors.
func (m masker) sql(s string, counts protocol.Counts) string {
	return m.text(s, counts)
}

// copyData masks the data of a CopyData with the detectors, same length: in binary
// COPY each field is length-prefixed inside the data.
func (m masker) copyData(b []byte, counts protocol.Counts) []byte {
	return m.r.Text(b, protocol.SameLength, counts)
}

// afterMask updates the masking state once the last frame of f's message is masked.
func (c *Conversation) afterMask(*schemas.Frame) {}

var (
	paramCmpRe    = regexp.MustCompile(`(?i)([a-z_][a-z0-9_$]*"?)\s*(?:=|<>|!=|\blike\b|\bilike\b)\s*\$(\d+)\b`)
	paramInsertRe = regexp.MustCompile(`(?is)\binsert\s+into\s+[^\s(]+\s*\(([^)]*)\)\s*values\s*\(([^)]*)\)`)
)

// ParamColumns maps Bind parameters (0-based) to the column a statement compares
// them with (col = $n, col LIKE $n) or inserts them into (INSERT INTO t (a, b)
// VALUES ($1, $2)), so column rules also cover parameters. Best effort: statements
// it does not understand map nothing.
func ParamColumns(sql string) map[int]string {
	out := map[int]string{}
	for _, m := range paramCmpRe.FindAllStringSubmatch(sql, -1) {
		if n, err := strconv.Atoi(m[2]); err == nil && n >= 1 {
			out[n-1] = unquoteIdent(m[1])
		}
	}
	for _, m := range paramInsertRe.FindAllStringSubmatch(sql, -1) {
		cols, vals := strings.Split(m[1], ","), strings.Split(m[2], ",")
		if len(cols) != len(vals) {
			continue
		}
		for i, v := range vals {
			v = strings.TrimSpace(v)
			if !strings.HasPrefix(v, "$") {
				continue
			}
			if n, err := strconv.Atoi(v[1:]); err == nil && n >= 1 {
				out[n-1] = unquoteIdent(strings.TrimSpace(cols[i]))
			}
		}
	}
	return out
}

func unquoteIdent(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Trim(s, `"`)
}
