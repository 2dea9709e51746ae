package verify

import (
	"testing"

	"github.com/tapline/tapline/schemas/sessiontest"
)

// Verify reads whatever the store holds: any frame values must give a report, never
// a panic, and a session with any frame altered must never be "ok".
func FuzzVerify(f *testing.F) {
	f.Add(3, []byte("tampered"), int64(0), "Query", false)
	f.Add(13, []byte{}, int64(-1), "session.end", true)
	f.Fuzz(func(t *testing.T, at int, payload []byte, seqDelta int64, kind string, dropSalt bool) {
		b := session()
		fs := clone(b.Frames)
		i := ((at % len(fs)) + len(fs)) % len(fs)
		g := &fs[i]
		g.Payload, g.Seq, g.Kind = payload, g.Seq+seqDelta, kind
		if dropSalt {
			g.PayloadSalt = nil
		}
		r, err := Session(b.ID, sessiontest.Seq(fs), trust(b))
		if err != nil {
			t.Fatal(err)
		}
		changed := string(payload) != string(b.Frames[i].Payload) || seqDelta != 0 || kind != b.Frames[i].Kind || dropSalt
		if changed && r.OK {
			t.Fatalf("frame %d altered (payload %q, seq %+d, kind %q, salt dropped %v) and still ok", i, payload, seqDelta, kind, dropSalt)
		}
	})
}
