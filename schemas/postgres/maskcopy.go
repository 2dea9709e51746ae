package postgres

import "github.com/tapline/tapline/schemas/protocol"

// copyState masks the fields of ruled columns in the data of a COPY ... FROM STDIN,
// in place, however the client cuts the data into CopyData messages (and however
// the recorder cuts those into fragments): it carries its position in the current
// row from one message to the next.
type copyState struct {
	Ruled  []bool `json:"ruled"`
	CSV    bool   `json:"csv,omitempty"`
	Binary bool   `json:"binary,omitempty"`
	Delim  byte   `json:"delim"`
	Field  int    `json:"field,omitempty"`  // current field of the current row
	Esc    bool   `json:"esc,omitempty"`    // text: the previous byte was a backslash
	Quoted bool   `json:"quoted,omitempty"` // csv: inside a quoted field
	Begun  bool   `json:"begun,omitempty"`  // the current field has been counted in this piece
}

// newCopyState returns the state of a COPY FROM STDIN into ruled columns, or nil.
func newCopyState(t *copyTarget, r protocol.MaskRules) *copyState {
	if t == nil || len(t.cols) == 0 {
		return nil
	}
	c := &copyState{Ruled: make([]bool, len(t.cols)), CSV: t.format == "csv", Binary: t.format == "binary", Delim: t.delim}
	any := false
	for i, col := range t.cols {
		c.Ruled[i] = r.Column(col)
		any = any || c.Ruled[i]
	}
	if !any {
		return nil
	}
	return c
}

// mask masks the ruled fields of b, one piece of the COPY data, in place. Binary
// data is masked whole: its fields cannot be told apart without the column types.
func (c *copyState) mask(b []byte, counts protocol.Counts) {
	if c.Binary {
		if len(b) > 0 {
			star(b)
			counts.Add(MaskColumn, 1)
		}
		return
	}
	// A field split across pieces counts in each, so that every piece whose bytes
	// change says so.
	c.Begun = false
	for i, ch := range b {
		if c.step(ch) {
			continue
		}
		if c.Field < len(c.Ruled) && c.Ruled[c.Field] {
			if !c.Begun {
				c.Begun = true
				counts.Add(MaskColumn, 1)
			}
			b[i] = '*'
		}
	}
}

// step advances over one byte and reports whether it is structure (a delimiter or
// line end) rather than field content.
func (c *copyState) step(ch byte) bool {
	switch {
	case c.Esc:
		c.Esc = false
		return false
	case c.CSV && ch == '"':
		c.Quoted = !c.Quoted
		return false
	case c.Quoted:
		return false
	case !c.CSV && ch == '\\':
		c.Esc = true
		return false
	case ch == c.Delim:
		c.Field++
		c.Begun = false
		return true
	case ch == '\n' || ch == '\r':
		c.Field = 0
		c.Begun = false
		return true
	}
	return false
}
