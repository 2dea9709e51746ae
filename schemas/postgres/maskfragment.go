package postgres

import (
	"encoding/binary"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// A Postgres message larger than the recorder's fragment limit arrives as several
// frames. Each frame is its own chain link and keeps its length, so fragments are
// masked in place, same length: DataRow and Bind are walked field by field across
// fragments (column and parameter rules apply, detectors run on each value's bytes
// within a fragment); any other message kind gets the detectors over each fragment's
// bytes. A secret split across a fragment boundary is seen by the column and parameter
// rules but not by the detectors.

// walk is the position of the walk through a fragmented DataRow or Bind.
type walk struct {
	Kind   string `json:"kind"`
	Step   int    `json:"step"`             // what is being read (walk* constants)
	Need   int    `json:"need,omitempty"`   // bytes still needed for the fixed-size field being read
	Acc    []byte `json:"acc,omitempty"`    // bytes of that field read so far
	Count  int    `json:"count,omitempty"`  // values (or format codes) in the message
	Index  int    `json:"index,omitempty"`  // current value (or format code)
	Remain int64  `json:"remain,omitempty"` // bytes left in the current value
	Masked bool   `json:"masked,omitempty"` // the current value is masked whole
	Stmt   []byte `json:"stmt,omitempty"`   // Bind: the statement name
	Cols   []bool `json:"cols,omitempty"`   // DataRow: which columns are masked
	Params []bool `json:"params,omitempty"` // Bind: which parameters are masked
	Done   bool   `json:"done,omitempty"`
	// Blind: the start of the message was lost (it could not be masked); the rest is
	// masked whole.
	Blind bool `json:"blind,omitempty"`
}

const (
	walkHeader     = iota // type byte and length
	walkCount             // int16 column or parameter count (DataRow) / format count (Bind)
	walkLen               // int32 value length
	walkValue             // value bytes
	walkPortal            // Bind: portal name, NUL-terminated
	walkStmt              // Bind: statement name, NUL-terminated
	walkFmt               // Bind: one int16 format code
	walkParamCount        // Bind: int16 parameter count
	walkRest              // the rest of the message is not masked
)

func (c *Conversation) maskFragment(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	if f.Fragment == 0 {
		c.Walk, c.Frag = nil, nil
		if f.Kind == DataRow || f.Kind == Bind {
			c.Walk = &walk{Kind: f.Kind, Step: walkHeader, Need: HeaderLen}
		}
	}
	out := append([]byte(nil), f.Payload...)
	w := c.Walk
	if w != nil && w.Blind && w.Kind == f.Kind && f.Fragment > 0 {
		star(out)
		counts.Add(schemas.MaskWithheld, 1)
	} else if w != nil && w.Kind == f.Kind && !w.Done {
		c.walk(w, out, r, counts)
	} else {
		skip := 0
		if f.Fragment == 0 {
			skip = min(HeaderLen, len(out))
		}
		if f.Kind == CopyData && c.Copy != nil {
			c.Copy.mask(out[skip:], counts)
		}
		copy(out[skip:], c.fragmentText(out[skip:], f.Final, r, counts))
	}
	if f.Final {
		c.Walk, c.Frag = nil, nil
		c.afterMask(f)
	}
	return out
}

// walk advances w over b, masking value bytes in place.
func (c *Conversation) walk(w *walk, b []byte, r protocol.MaskRules, counts protocol.Counts) {
	for i := 0; i < len(b) && !w.Done; {
		switch w.Step {
		case walkValue:
			n := int(min(w.Remain, int64(len(b)-i)))
			seg := b[i : i+n]
			if w.Masked {
				star(seg)
				counts.Add(w.maskType(), 1)
			} else {
				// A value cut by a fragment boundary is one stream for the detectors,
				// text or binary format alike (see valueStyle).
				copy(seg, c.fragmentText(seg, w.Remain == int64(n), r, counts))
			}
			i += n
			if w.Remain -= int64(n); w.Remain == 0 {
				w.nextValue()
			}
		case walkPortal, walkStmt:
			c := b[i]
			i++
			if c != 0 {
				if w.Step == walkStmt && len(w.Stmt) < 1024 {
					w.Stmt = append(w.Stmt, c)
				}
				continue
			}
			if w.Step == walkPortal {
				w.Step = walkStmt
			} else {
				w.Step, w.Need = walkCount, 2
			}
		case walkRest:
			return
		default: // fixed-size fields
			n := min(w.Need, len(b)-i)
			w.Acc = append(w.Acc, b[i:i+n]...)
			i += n
			if w.Need -= n; w.Need == 0 {
				c.field(w, r)
			}
		}
	}
}

// field handles a completed fixed-size field.
func (c *Conversation) field(w *walk, r protocol.MaskRules) {
	v := w.Acc
	w.Acc = nil
	switch w.Step {
	case walkHeader:
		if w.Kind == Bind {
			w.Step = walkPortal
			return
		}
		w.Step, w.Need = walkCount, 2
	case walkCount:
		n := int(binary.BigEndian.Uint16(v))
		if w.Kind == DataRow {
			w.Count = n
			cols := c.RowColumns()
			w.Cols = make([]bool, n)
			for i := range n {
				w.Cols[i] = i < len(cols) && r.Column(cols[i])
			}
			w.startValues()
			return
		}
		// Bind: format code count, then the codes.
		w.Count, w.Index = n, 0
		if n == 0 {
			w.Step, w.Need = walkParamCount, 2
			return
		}
		w.Step, w.Need = walkFmt, 2
	case walkFmt: // every parameter goes through the detectors: the codes are skipped
		if w.Index++; w.Index < w.Count {
			w.Need = 2
			return
		}
		w.Step, w.Need = walkParamCount, 2
	case walkParamCount:
		w.Count = int(binary.BigEndian.Uint16(v))
		w.Params = nil
		for _, typ := range c.boundParams(string(w.Stmt), w.Count, r) {
			w.Params = append(w.Params, typ != "")
		}
		w.startValues()
	case walkLen:
		n := int32(binary.BigEndian.Uint32(v))
		if n <= 0 { // NULL or empty
			w.nextValue()
			return
		}
		w.Step, w.Remain = walkValue, int64(n)
		if w.Kind == DataRow {
			w.Masked = w.Cols[w.Index]
		} else {
			w.Masked = w.Params[w.Index]
		}
	}
}

func (w *walk) startValues() {
	w.Index = 0
	if w.Count == 0 {
		w.Step = walkRest
		w.Done = w.Kind == DataRow
		return
	}
	w.Step, w.Need = walkLen, 4
}

func (w *walk) nextValue() {
	w.Masked = false
	if w.Index++; w.Index >= w.Count {
		w.Step, w.Done = walkRest, true
		return
	}
	w.Step, w.Need = walkLen, 4
}

func (w *walk) maskType() string {
	if w.Kind == DataRow {
		return MaskColumn
	}
	return MaskParam
}

// star overwrites every byte with '*' except line breaks, as protocol.SameLength
// masks.
func star(b []byte) {
	for i, c := range b {
		if c != '\n' && c != '\r' {
			b[i] = '*'
		}
	}
}
