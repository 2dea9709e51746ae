package mask

import (
	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// httpFrame masks a frame of the HTTP edge with the protocol package's rules
// (heads, trailers, whole JSON and form bodies, detectors elsewhere), fed with
// this target's header and field names and detectors.
func (t *targetRules) httpFrame(f *schemas.Frame, st *State, counts Counts) []byte {
	if st.HTTP == nil {
		st.HTTP = &hs.MaskState{}
	}
	c := Counts{}
	out := st.HTTP.MaskFrame(f, hs.MaskRules{
		Header: func(n string) bool { return t.headers[n] },
		Field:  func(n string) bool { return t.jsonFields[n] },
		Text:   func(b []byte) []byte { return t.text(b, token, c) },
		Count:  func(typ string, n int64) { c.add(typ, n) },
	})
	if len(c) == 0 {
		return f.Payload
	}
	counts.merge(c)
	return out
}
