package clickhouse

import (
	"errors"
	"strings"
)

// An auditor's statement is checked with a small lexer rather than by searching its
// text: a word inside a string, a quoted identifier or a comment is not SQL, and
// `SELECT * FROM table_settings` has no SETTINGS clause. Where the lexer and
// ClickHouse could disagree it errs towards refusing: "#" is not taken as a comment
// and block comments do not nest, so text it skips is text ClickHouse skips too.

// sqlToken is one lexical token of a statement; comments and spaces are dropped.
type sqlToken struct {
	kind byte   // 'w' bare word, 'q' quoted identifier, 's' string, 'p' punctuation
	text string // the word or identifier (unquoted), or the punctuation character
}

var errUnterminated = errors.New("unterminated string, quoted identifier or comment")

// lexSQL splits a statement into tokens.
func lexSQL(q string) ([]sqlToken, error) {
	var out []sqlToken
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(q[i:], "--"):
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				return out, nil
			}
			i += end + 1
		case strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil, errUnterminated
			}
			i += 2 + end + 2
		case c == '\'' || c == '"' || c == '`':
			body, n, err := quoted(q[i:])
			if err != nil {
				return nil, err
			}
			kind := byte('q')
			if c == '\'' {
				kind = 's'
			}
			out = append(out, sqlToken{kind, body})
			i += n
		case c == '$':
			n, ok := heredoc(q[i:])
			if !ok {
				out = append(out, sqlToken{'p', "$"})
				i++
				continue
			}
			out = append(out, sqlToken{'s', q[i : i+n]})
			i += n
		case isWordByte(c):
			j := i + 1
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			out = append(out, sqlToken{'w', q[i:j]})
			i = j
		default:
			out = append(out, sqlToken{'p', q[i : i+1]})
			i++
		}
	}
	return out, nil
}

// isWordByte: letters, digits, "_" and every non-ASCII byte (ClickHouse allows UTF-8
// in bare identifiers).
func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// quoted reads a '...', "..." or `...` token: a backslash escapes the next byte, and
// a doubled quote stands for one. It returns the body and the bytes consumed.
func quoted(s string) (string, int, error) {
	qc := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, errUnterminated
			}
			i++
			b.WriteByte(s[i])
		case c == qc && i+1 < len(s) && s[i+1] == qc:
			b.WriteByte(qc)
			i++
		case c == qc:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errUnterminated
}

// heredoc reads a $tag$ ... $tag$ string (tag possibly empty) and returns its length.
func heredoc(s string) (int, bool) {
	j := 1
	for j < len(s) && isWordByte(s[j]) && s[j] < 0x80 {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return 0, false
	}
	tag := s[:j+1]
	end := strings.Index(s[j+1:], tag)
	if end < 0 {
		return 0, false
	}
	return j + 1 + end + len(tag), true
}

// checkAuditorSQL refuses what an auditor's statement may not contain: a second
// statement, or a SETTINGS clause (which could lift readonly or the limits inside
// the wrapping subquery). It returns the statement without trailing ";".
func checkAuditorSQL(q string) (string, error) {
	toks, err := lexSQL(q)
	if err != nil {
		return "", err
	}
	for len(toks) > 0 && toks[len(toks)-1] == (sqlToken{'p', ";"}) {
		toks = toks[:len(toks)-1]
		q = strings.TrimRight(strings.TrimRight(q, " \t\r\n\f\v"), ";")
		q = strings.TrimRight(q, " \t\r\n\f\v")
	}
	if len(toks) == 0 {
		return "", errors.New("empty statement")
	}
	for i, t := range toks {
		switch {
		case t == (sqlToken{'p', ";"}):
			return "", errors.New("one statement only (a ';' outside strings and comments)")
		case settingsClause(toks, i):
			return "", errors.New("SETTINGS clauses are not allowed: the server fixes readonly and the time, row and memory limits")
		}
	}
	return q, nil
}

// settingsClause reports whether toks[i] starts a SETTINGS clause: the bare word
// SETTINGS followed by a setting name and "=". A column or table merely named so
// (system.settings, table_settings, `settings`) is not one.
func settingsClause(toks []sqlToken, i int) bool {
	t := toks[i]
	if t.kind != 'w' || !strings.EqualFold(t.text, "settings") || i+2 >= len(toks) {
		return false
	}
	name, eq := toks[i+1], toks[i+2]
	return (name.kind == 'w' || name.kind == 'q') && eq == (sqlToken{'p', "="})
}
