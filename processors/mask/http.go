package mask

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	"github.com/tapline/tapline/schemas"
)

// http masks an HTTP/1.x message (the payload of http.* frames from the HTTP and
// Kubernetes proxies: start line, headers, body). Configured headers have their values
// masked (an Authorization scheme word is kept), query parameters and JSON fields with
// configured names are masked, and the detectors run over the rest of the head and
// over textual bodies. Content-Length is fixed up; a chunked body is re-encoded as a
// single chunk. Continuation fragments get the detectors, same length.
func (t *targetRules) http(f *schemas.Frame, counts Counts) []byte {
	if f.Fragment > 0 {
		return t.text(f.Payload, sameLength, counts)
	}
	p := f.Payload
	sep := bytes.Index(p, []byte("\r\n\r\n"))
	if sep < 0 {
		return t.text(p, sameLength, counts)
	}
	head, body := p[:sep], p[sep+4:]
	lines := bytes.Split(head, []byte("\r\n"))
	c := Counts{}
	lines[0] = t.startLine(lines[0], c)
	var ctype string
	chunked := false
	clIndex := -1
	for i := 1; i < len(lines); i++ {
		name, value, ok := bytes.Cut(lines[i], []byte(":"))
		if !ok {
			continue
		}
		lname := strings.ToLower(strings.TrimSpace(string(name)))
		switch lname {
		case "content-type":
			ctype = strings.ToLower(string(value))
		case "transfer-encoding":
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case "content-length":
			clIndex = i
		}
		if t.headers[lname] {
			c.add(Header, 1)
			lines[i] = append(append(append([]byte{}, name...), ": "...), maskHeaderValue(lname, value)...)
			continue
		}
		if nv := t.text(value, token, c); !bytes.Equal(nv, value) {
			lines[i] = append(append(append([]byte{}, name...), ':'), nv...)
		}
	}
	complete := f.Final
	if chunked {
		if dec, ok := dechunk(body); ok {
			body = dec
		} else {
			complete = false
		}
	}
	newBody := body
	if complete && textual(ctype) {
		if strings.Contains(ctype, "json") {
			newBody = t.maskJSON(newBody, c)
		} else if strings.Contains(ctype, "x-www-form-urlencoded") {
			newBody = t.formFields(newBody, c)
		}
		newBody = t.text(newBody, token, c)
	} else if !complete {
		newBody = t.text(body, sameLength, c)
	}
	if len(c) == 0 {
		return p
	}
	counts.merge(c)
	if complete && chunked {
		newBody = rechunk(newBody)
	} else if complete && clIndex > 0 {
		lines[clIndex] = []byte("Content-Length: " + strconv.Itoa(len(newBody)))
	}
	out := bytes.Join(lines, []byte("\r\n"))
	out = append(out, "\r\n\r\n"...)
	return append(out, newBody...)
}

func maskHeaderValue(name string, v []byte) string {
	v = bytes.TrimSpace(v)
	if name == "authorization" || name == "proxy-authorization" {
		if scheme, _, ok := bytes.Cut(v, []byte(" ")); ok {
			return string(scheme) + " " + Token(Header)
		}
	}
	return Token(Header)
}

// startLine masks query parameters named like secrets in a request target.
func (t *targetRules) startLine(l []byte, c Counts) []byte {
	parts := bytes.SplitN(l, []byte(" "), 3)
	if len(parts) == 3 && bytes.Contains(parts[1], []byte("?")) {
		pathPart, query, _ := bytes.Cut(parts[1], []byte("?"))
		parts[1] = append(append(append([]byte{}, pathPart...), '?'), t.formFields(query, c)...)
		l = bytes.Join(parts, []byte(" "))
	}
	return t.text(l, token, c)
}

// formFields masks values of urlencoded fields whose names are JSON-field rules.
func (t *targetRules) formFields(b []byte, c Counts) []byte {
	pairs := bytes.Split(b, []byte("&"))
	changed := false
	for i, kv := range pairs {
		k, _, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(string(k))
		if err != nil || !t.jsonFields[strings.ToLower(name)] {
			continue
		}
		c.add(JSONField, 1)
		pairs[i] = append(append(append([]byte{}, k...), '='), url.QueryEscape(Token(JSONField))...)
		changed = true
	}
	if !changed {
		return b
	}
	return bytes.Join(pairs, []byte("&"))
}

func textual(ctype string) bool {
	if ctype == "" {
		return true
	}
	for _, s := range []string{"json", "text/", "xml", "yaml", "x-www-form-urlencoded", "javascript"} {
		if strings.Contains(ctype, s) {
			return true
		}
	}
	return false
}

// maskJSON replaces the scalar values of object members whose names are configured
// with a masked string, in place in the text, keeping the rest of the document as is.
func (t *targetRules) maskJSON(b []byte, c Counts) []byte {
	var out []byte
	last := 0
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			continue
		}
		end := stringEnd(b, i)
		if end < 0 {
			break
		}
		j := skipSpace(b, end+1)
		if j >= len(b) || b[j] != ':' {
			i = end
			continue
		}
		key := strings.ToLower(string(b[i+1 : end]))
		vs := skipSpace(b, j+1)
		ve := scalarEnd(b, vs)
		if !t.jsonFields[key] || ve < 0 {
			i = end
			continue
		}
		c.add(JSONField, 1)
		out = append(out, b[last:vs]...)
		out = append(out, '"')
		out = append(out, Token(JSONField)...)
		out = append(out, '"')
		last = ve
		i = ve - 1
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// stringEnd returns the index of the quote closing the JSON string starting at i.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scalarEnd returns the end of the scalar value at i, or -1 for an object, an array
// (whose members are looked at on their own) or null.
func scalarEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		if e := stringEnd(b, i); e >= 0 {
			return e + 1
		}
		return -1
	case c == '{' || c == '[' || c == 'n':
		return -1
	default:
		j := i
		for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[j])) {
			j++
		}
		return j
	}
}

// dechunk decodes a complete chunked body; ok is false when it is cut short.
func dechunk(b []byte) ([]byte, bool) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, false
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(strings.TrimSpace(string(size)), 16, 64)
		if err != nil || n < 0 || int64(len(rest)) < n+2 {
			return nil, false
		}
		if n == 0 {
			return out, true
		}
		out = append(out, rest[:n]...)
		b = rest[n+2:]
	}
}

func rechunk(b []byte) []byte {
	out := []byte(strconv.FormatInt(int64(len(b)), 16) + "\r\n")
	out = append(out, b...)
	return append(out, "\r\n0\r\n\r\n"...)
}
