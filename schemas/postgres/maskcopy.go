package postgres

import (
	"encoding/binary"

	"github.com/tapline/tapline/schemas/protocol"
)

// copyState masks the fields of ruled columns in the data of a COPY ... FROM STDIN,
// in place, however the client cuts the data into CopyData messages (and however
// the recorder cuts those into fragments): it carries its position in the current
// row from one message to the next.
type copyState struct {
	Ruled []bool `json:"ruled"`
	// Beyond: fields past Ruled are masked too, as positional (a COPY without a
	// column list, into a table whose columns are not declared or are fewer).
	Beyond bool `json:"beyond,omitempty"`
	CSV    bool `json:"csv,omitempty"`
	Binary bool `json:"binary,omitempty"`
	Delim  byte `json:"delim"`
	Field  int  `json:"field,omitempty"`  // current field of the current row
	Esc    bool `json:"esc,omitempty"`    // text: the previous byte was a backslash
	Quoted bool `json:"quoted,omitempty"` // csv: inside a quoted field
	Begun  bool `json:"begun,omitempty"`  // the current field has been counted in this piece
	// Binary format: what is being read, the bytes of a fixed-size number so far and
	// how many it needs, and the bytes left of the current value (or extension).
	Step   int    `json:"step,omitempty"`
	Acc    []byte `json:"acc,omitempty"`
	Remain int64  `json:"remain,omitempty"`
	Fields int    `json:"fields,omitempty"` // fields in the current tuple
}

// Steps through binary COPY data: the header (signature, flags, extension length,
// extension), then tuples (field count, then each field's length and value).
const (
	binSignature = iota
	binFlags
	binExtLen
	binExt
	binCount
	binLen
	binValue
	binEnd
)

var binFixed = map[int]int{binSignature: 11, binFlags: 4, binExtLen: 4, binCount: 2, binLen: 4}

// newCopyState returns the state of a COPY FROM STDIN into ruled columns, or nil.
// Without a column list the fields fill the table's columns in order: the order
// the rules declare for it, or, for a table not declared, an unknown order, so
// every field is masked.
func newCopyState(t *copyTarget, r protocol.MaskRules) *copyState {
	if t == nil {
		return nil
	}
	cols, beyond := t.cols, false
	if len(cols) == 0 {
		cols, _ = declaredColumns(r, t.rel)
		beyond = true
	}
	c := &copyState{Ruled: make([]bool, len(cols)), Beyond: beyond, CSV: t.format == "csv", Binary: t.format == "binary", Delim: t.delim}
	any := beyond
	for i, col := range cols {
		c.Ruled[i] = r.Column(col)
		any = any || c.Ruled[i]
	}
	if !any {
		return nil
	}
	return c
}

// ruled is the mask type of field i ("" when it is kept).
func (c *copyState) ruled(i int) string {
	switch {
	case i < len(c.Ruled) && c.Ruled[i]:
		return MaskColumn
	case i >= len(c.Ruled) && c.Beyond:
		return MaskPositional
	}
	return ""
}

// mask masks the ruled fields of b, one piece of the COPY data, in place.
func (c *copyState) mask(b []byte, counts protocol.Counts) {
	if c.Binary {
		c.maskBinary(b, counts)
		return
	}
	// A field split across pieces counts in each, so that every piece whose bytes
	// change says so.
	c.Begun = false
	for i, ch := range b {
		if c.step(ch) {
			continue
		}
		if typ := c.ruled(c.Field); typ != "" {
			if !c.Begun {
				c.Begun = true
				counts.Add(typ, 1)
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

// maskBinary walks binary COPY data: every field is length-prefixed, so ruled
// values are masked without knowing their types.
func (c *copyState) maskBinary(b []byte, counts protocol.Counts) {
	c.Begun = false
	for i := 0; i < len(b) && c.Step != binEnd; {
		if c.Step == binValue || c.Step == binExt {
			n := int(min(c.Remain, int64(len(b)-i)))
			if typ := c.ruled(c.Field); c.Step == binValue && typ != "" && n > 0 {
				for j := i; j < i+n; j++ {
					b[j] = '*'
				}
				if !c.Begun {
					c.Begun = true
					counts.Add(typ, 1)
				}
			}
			i += n
			if c.Remain -= int64(n); c.Remain == 0 {
				c.next()
			}
			continue
		}
		need := binFixed[c.Step] - len(c.Acc)
		n := min(need, len(b)-i)
		c.Acc = append(c.Acc, b[i:i+n]...)
		i += n
		if n == need {
			c.number()
		}
	}
}

// number handles a completed fixed-size field of binary COPY data.
func (c *copyState) number() {
	v := c.Acc
	c.Acc = nil
	switch c.Step {
	case binSignature:
		c.Step = binFlags
	case binFlags:
		c.Step = binExtLen
	case binExtLen:
		c.Step, c.Remain = binExt, int64(binary.BigEndian.Uint32(v))
		if c.Remain <= 0 {
			c.Step = binCount
		}
	case binCount:
		n := int16(binary.BigEndian.Uint16(v))
		if n < 0 { // the trailer
			c.Step = binEnd
			return
		}
		c.Field, c.Fields = -1, int(n)
		c.nextField()
	case binLen:
		n := int32(binary.BigEndian.Uint32(v))
		if n <= 0 { // NULL or empty
			c.nextField()
			return
		}
		c.Step, c.Remain = binValue, int64(n)
	}
}

// next follows the end of a value or of the header's extension.
func (c *copyState) next() {
	if c.Step == binExt {
		c.Step = binCount
		return
	}
	c.nextField()
}

func (c *copyState) nextField() {
	c.Field++
	if c.Field >= c.Fields {
		c.Step = binCount
		return
	}
	c.Step = binLen
}
