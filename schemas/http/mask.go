package http

import (
	"bytes"
	"net/url"
	"strings"
)

// Mask types counted in a frame's masks.
const (
	MaskHeader = "http_header" // a header or trailer value
	MaskField  = "json_field"  // a JSON member or form field by its name
)

// Token is what replaces a masked value.
func Token(typ string) string { return "[masked:" + typ + "]" }

// MaskRules say what to mask. The processor fills them from its configuration;
// SensitiveHeaders are masked whatever Header says.
type MaskRules struct {
	// Header reports whether a header (lower-case name) is masked.
	Header func(lname string) bool
	// Field reports whether a JSON member or form field (lower-case name) is masked.
	Field func(lname string) bool
	// Text masks detector hits in text and counts them; nil masks nothing.
	Text func(b []byte) []byte
	// Bytes masks detector hits in binary content (a body that is not
	// textual, a WebSocket binary message) keeping its length, and counts
	// them; nil masks nothing.
	Bytes func(b []byte) []byte
	// Count receives what was masked.
	Count func(typ string, n int64)
}

func (r *MaskRules) header(lname string) bool {
	for _, s := range SensitiveHeaders {
		if s == lname {
			return true
		}
	}
	return r.Header != nil && r.Header(lname)
}

func (r *MaskRules) field(lname string) bool { return r.Field != nil && r.Field(lname) }

func (r *MaskRules) text(b []byte) []byte {
	if r.Text == nil {
		return b
	}
	return r.Text(b)
}

func (r *MaskRules) bytes(b []byte) []byte {
	if r.Bytes == nil {
		return b
	}
	return r.Bytes(b)
}

func (r *MaskRules) count(typ string) {
	if r.Count != nil {
		r.Count(typ, 1)
	}
}

// MaskHead masks a head payload (KindRequest, KindResponse): sensitive and
// configured headers (an Authorization scheme word is kept), query parameters
// named like fields, and detector hits in other values and the target. ok is
// false when the payload is not a head; the caller then masks it as text.
func MaskHead(p []byte, r MaskRules) (out []byte, ok bool) {
	h, err := DecodeHead(p)
	if err != nil {
		return nil, false
	}
	h.Target = r.maskTarget(h.Target)
	h.Path = r.maskTarget(h.Path)
	r.maskFields(h.Headers)
	return EncodeHead(h), true
}

// MaskEnd masks the trailers of an end payload.
func MaskEnd(p []byte, r MaskRules) (out []byte, ok bool) {
	e, err := DecodeEnd(p)
	if err != nil {
		return nil, false
	}
	r.maskFields(e.Trailers)
	e.Error = string(r.text([]byte(e.Error)))
	return EncodeEnd(e), true
}

func (r *MaskRules) maskFields(fs []Field) {
	for i := range fs {
		lname := strings.ToLower(fs[i].Name)
		if r.header(lname) {
			r.count(MaskHeader)
			fs[i].Value = maskHeaderValue(lname, fs[i].Value)
			continue
		}
		fs[i].Value = string(r.text([]byte(fs[i].Value)))
	}
}

func maskHeaderValue(lname, v string) string {
	v = strings.TrimSpace(v)
	if lname == "authorization" || lname == "proxy-authorization" {
		if scheme, _, ok := strings.Cut(v, " "); ok {
			return scheme + " " + Token(MaskHeader)
		}
	}
	return Token(MaskHeader)
}

func (r *MaskRules) maskTarget(t string) string {
	if path, query, ok := strings.Cut(t, "?"); ok {
		t = path + "?" + string(r.form([]byte(query)))
	}
	return string(r.text([]byte(t)))
}

// MaskBody masks a whole body (one frame holding all of it) of the given
// content type: JSON members and form fields by name, then detectors over
// textual bodies. Other bodies get the detectors keeping their length (a
// file's text may hold a secret, as in an scp); compressed ones that reach
// here (not decoded: binary types) are left as sent.
func MaskBody(b []byte, contentType, contentEncoding string, r MaskRules) []byte {
	ct := strings.ToLower(contentType)
	if compressed(contentEncoding) {
		return b
	}
	if !textual(ct) {
		return r.bytes(b)
	}
	switch {
	case strings.Contains(ct, "json"):
		b = r.json(b)
	case strings.Contains(ct, "x-www-form-urlencoded"):
		b = r.form(b)
	}
	return r.text(b)
}

// MaskPart masks part of a body (a fragment of a large or streamed body, an
// SSE event): detectors only, as fields may straddle frames.
func MaskPart(b []byte, contentType, contentEncoding string, r MaskRules) []byte {
	switch {
	case compressed(contentEncoding):
		return b
	case !textual(strings.ToLower(contentType)):
		return r.bytes(b)
	}
	return r.text(b)
}

func compressed(contentEncoding string) bool {
	return contentEncoding != "" && !strings.EqualFold(contentEncoding, "identity")
}

func textual(ct string) bool {
	if ct == "" {
		return true
	}
	for _, s := range []string{"json", "text/", "xml", "yaml", "x-www-form-urlencoded", "javascript", "event-stream"} {
		if strings.Contains(ct, s) {
			return true
		}
	}
	return false
}

// form masks urlencoded fields whose names are field rules.
func (r *MaskRules) form(b []byte) []byte {
	pairs := bytes.Split(b, []byte("&"))
	changed := false
	for i, kv := range pairs {
		k, _, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(string(k))
		if err != nil || !r.field(strings.ToLower(name)) {
			continue
		}
		r.count(MaskField)
		pairs[i] = append(append(append([]byte{}, k...), '='), url.QueryEscape(Token(MaskField))...)
		changed = true
	}
	if !changed {
		return b
	}
	return bytes.Join(pairs, []byte("&"))
}

// json replaces the scalar values of object members with configured names by a
// masked string, in place in the text, keeping the rest of the document as is
// (a body that is not valid JSON is still masked where it looks like JSON).
func (r *MaskRules) json(b []byte) []byte {
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
		if !r.field(key) || ve < 0 {
			i = end
			continue
		}
		r.count(MaskField)
		out = append(out, b[last:vs]...)
		out = append(out, '"')
		out = append(out, Token(MaskField)...)
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

// scalarEnd returns the end of the scalar value at i, or -1 for an object, an
// array (whose members are looked at on their own) or null.
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
