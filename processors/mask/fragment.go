package mask

import (
	"encoding/binary"

	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
)

// A Postgres message larger than the recorder's fragment limit arrives as several
// frames. Each frame is its own chain link and keeps its length, so fragments are
// masked in place, same length: DataRow and Bind are walked field by field across
// fragments (column and parameter rules apply, detectors run on each value's bytes
// within a fragment); any other message kind gets the detectors over each fragment's
// bytes. A secret split across a fragment boundary is seen by the column and parameter
// rules but not by the detectors.

// pgWalk is the position of the walk through a fragmented DataRow or Bind.
type pgWalk struct {
	Kind   string  `json:"kind"`
	Step   int     `json:"step"`             // what is being read (walk* constants)
	Need   int     `json:"need,omitempty"`   // bytes still needed for the fixed-size field being read
	Acc    []byte  `json:"acc,omitempty"`    // bytes of that field read so far
	Count  int     `json:"count,omitempty"`  // values (or format codes) in the message
	Index  int     `json:"index,omitempty"`  // current value (or format code)
	Remain int64   `json:"remain,omitempty"` // bytes left in the current value
	Masked bool    `json:"masked,omitempty"` // the current value is masked whole
	Text   bool    `json:"text,omitempty"`   // the current value is in text format
	Stmt   []byte  `json:"stmt,omitempty"`   // Bind: the statement name
	Cols   []bool  `json:"cols,omitempty"`   // DataRow: which columns are masked
	Params []bool  `json:"params,omitempty"` // Bind: which parameters are masked
	Fmts   []int16 `json:"fmts,omitempty"`   // Bind: parameter format codes
	Done   bool    `json:"done,omitempty"`
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

func (t *targetRules) pgFragment(f *schemas.Frame, st *State, pg PGContext, counts Counts) []byte {
	if f.Fragment == 0 {
		st.Walk = nil
		if f.Kind == pgwire.DataRow || f.Kind == pgwire.Bind {
			st.Walk = &pgWalk{Kind: f.Kind, Step: walkHeader, Need: pgwire.HeaderLen}
		}
	}
	out := append([]byte(nil), f.Payload...)
	w := st.Walk
	if w != nil && w.Blind && w.Kind == f.Kind && f.Fragment > 0 {
		star(out)
		counts.add(schemas.MaskWithheld, 1)
	} else if w != nil && w.Kind == f.Kind && !w.Done {
		t.walk(w, out, pg, counts)
	} else {
		skip := 0
		if f.Fragment == 0 {
			skip = min(pgwire.HeaderLen, len(out))
		}
		masked := t.text(out[skip:], sameLength, counts)
		copy(out[skip:], masked)
	}
	if f.Final {
		st.Walk = nil
	}
	return out
}

// walk advances w over b, masking value bytes in place.
func (t *targetRules) walk(w *pgWalk, b []byte, pg PGContext, counts Counts) {
	for i := 0; i < len(b) && !w.Done; {
		switch w.Step {
		case walkValue:
			n := int(min(w.Remain, int64(len(b)-i)))
			seg := b[i : i+n]
			switch {
			case w.Masked && n > 0:
				star(seg)
				counts.add(w.maskType(), 1)
			case w.Text:
				copy(seg, t.text(seg, sameLength, counts))
			}
			i += n
			if w.Remain -= int64(n); w.Remain == 0 {
				t.nextValue(w)
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
				t.field(w, pg, counts)
			}
		}
	}
}

// field handles a completed fixed-size field.
func (t *targetRules) field(w *pgWalk, pg PGContext, _ Counts) {
	v := w.Acc
	w.Acc = nil
	switch w.Step {
	case walkHeader:
		if w.Kind == pgwire.Bind {
			w.Step = walkPortal
			return
		}
		w.Step, w.Need = walkCount, 2
	case walkCount:
		n := int(binary.BigEndian.Uint16(v))
		if w.Kind == pgwire.DataRow {
			w.Count = n
			var cols []string
			if pg != nil {
				cols = pg.RowColumns()
			}
			w.Cols = make([]bool, n)
			for i := range n {
				w.Cols[i] = i < len(cols) && t.maskColumn(cols[i])
			}
			t.startValues(w)
			return
		}
		// Bind: format code count, then the codes.
		w.Count, w.Index = n, 0
		if n == 0 {
			w.Step, w.Need = walkParamCount, 2
			return
		}
		w.Step, w.Need = walkFmt, 2
	case walkFmt:
		w.Fmts = append(w.Fmts, int16(binary.BigEndian.Uint16(v)))
		if w.Index++; w.Index < w.Count {
			w.Need = 2
			return
		}
		w.Step, w.Need = walkParamCount, 2
	case walkParamCount:
		w.Count = int(binary.BigEndian.Uint16(v))
		var byCol map[int]string
		if pg != nil {
			if sql, ok := pg.StatementText(string(w.Stmt)); ok {
				byCol = ParamColumns(sql)
			}
		}
		w.Params = make([]bool, w.Count)
		for i := range w.Count {
			w.Params[i] = t.maskParam(i) || (byCol[i] != "" && t.maskColumn(byCol[i]))
		}
		t.startValues(w)
	case walkLen:
		n := int32(binary.BigEndian.Uint32(v))
		if n <= 0 { // NULL or empty
			t.nextValue(w)
			return
		}
		w.Step, w.Remain = walkValue, int64(n)
		if w.Kind == pgwire.DataRow {
			w.Masked, w.Text = w.Cols[w.Index], true
		} else {
			w.Masked, w.Text = w.Params[w.Index], pgwire.FormatCode(w.Fmts, w.Index) == 0
		}
	}
}

func (t *targetRules) startValues(w *pgWalk) {
	w.Index = 0
	if w.Count == 0 {
		w.Step = walkRest
		w.Done = w.Kind == pgwire.DataRow
		return
	}
	w.Step, w.Need = walkLen, 4
}

func (t *targetRules) nextValue(w *pgWalk) {
	w.Masked, w.Text = false, false
	if w.Index++; w.Index >= w.Count {
		w.Step, w.Done = walkRest, true
		return
	}
	w.Step, w.Need = walkLen, 4
}

func (w *pgWalk) maskType() string {
	if w.Kind == pgwire.DataRow {
		return Column
	}
	return Param
}
