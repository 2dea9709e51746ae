package pipeline

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
)

// checkSessionJSON fails unless appendSession writes what encoding/json writes
// for s, or fails where it fails.
func checkSessionJSON(t *testing.T, s *session) {
	t.Helper()
	want, wantErr := json.Marshal((*plainSession)(s))
	got, err := appendSession(nil, s)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, encoding/json's %v", err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("state differs from encoding/json's:\n got %s\nwant %s", got, want)
	}
}

// TestSessionJSONMatchesEncodingJSON: every session state that processing
// interleaved Postgres and SSH sessions saves, after every frame, is written
// byte for byte as encoding/json would, so saved state reads back as before.
func TestSessionJSONMatchesEncodingJSON(t *testing.T) {
	p := newProcessor(t)
	var out Output
	checked := 0
	for _, f := range interleaved(t, 12, 7) {
		out.Reset()
		if err := p.Frame(f, &out); err != nil {
			t.Fatal(err)
		}
		checkSessionJSON(t, p.sessions[f.SessionID])
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d states checked", checked)
	}
}

// TestSessionJSONEdgeCases covers what processing rarely produces: strings
// that need escaping, nil against empty slices, every optional field, zones,
// held frames, and the years time.Time refuses to write.
func TestSessionJSONEdgeCases(t *testing.T) {
	yes, no := true, false
	ended := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 5*3600+30*60))
	base := func() *session {
		s := newSession(&schemas.Frame{SessionID: "6f1c1a57-9d0e-4e55-9d0f-0c1e0c6f7a11", Protocol: schemas.Postgres, TS: t0})
		s.LastTS, s.SummaryTS = t0, t0.Add(time.Second)
		return s
	}
	cases := map[string]func(s *session){
		"new": func(*session) {},
		"escapes": func(s *session) {
			s.Summary.Name = "<script>&\"\\\n\r\t\b\f\x00\x1f\x7f"
			s.Summary.EndReason = "bad \xff utf-8 \u2028 \u2029 é 世界"
			s.Summary.Groups = []string{"", "a<b", "\xc3"}
		},
		"empty slices": func(s *session) {
			s.Summary.Groups, s.Summary.Integrity, s.Summary.FinalHash = []string{}, []string{}, []byte{}
			s.Tip.Hash = []byte{}
		},
		"everything set": func(s *session) {
			s.Summary.EndedAt, s.Summary.SignatureOK = &ended, &yes
			s.Summary.FinalHash, s.Tip.Hash = []byte{0, 1, 2, 0xff}, []byte("hash")
			s.Summary.Integrity = []string{"seq gap"}
			s.Summary.Frames, s.Summary.LastSeq, s.Summary.Version = 1<<40, -1, -7
			s.Tip.Ended, s.Changed, s.Closed, s.AbandonedAt = true, true, true, &ended
			s.LastTS = time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
		},
		"signature false": func(s *session) { s.Summary.SignatureOK = &no },
		"held": func(s *session) {
			s.Held = []heldFrame{{Frame: schemas.Frame{SessionID: "x", Seq: 3, Payload: []byte("pass")}, Stream: "0", Pending: 2, Masked: true}}
		},
		"zero times": func(s *session) { s.LastTS, s.Summary.StartedAt = time.Time{}, time.Time{} },
		"year 10000": func(s *session) { s.SummaryTS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative year": func(s *session) {
			e := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
			s.Summary.EndedAt = &e
		},
		"offset with seconds": func(s *session) { s.LastTS = t0.In(time.FixedZone("LMT", 3600+17)) },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			s := base()
			change(s)
			checkSessionJSON(t, s)
		})
	}
}

func FuzzSessionJSON(f *testing.F) {
	f.Add("alice", "<&>", []byte{0xff, 'a'}, int64(3), int64(-1), true)
	f.Add("\u2028", "\x00\"\\", []byte{}, int64(0), int64(1<<62), false)
	f.Fuzz(func(t *testing.T, a, b string, h []byte, n, ts int64, flag bool) {
		s := newSession(&schemas.Frame{SessionID: a, Protocol: schemas.Protocol(b), TS: time.Unix(0, ts).UTC()})
		s.Summary.Subject, s.Summary.Groups, s.Summary.EndReason = b, []string{a, b}, a+b
		s.Summary.Frames, s.Summary.FinalHash, s.Tip.Hash, s.Tip.Seq = n, h, h, n
		s.LastTS = time.Unix(ts, n%1e9).In(time.FixedZone(a, int(n%(48*3600))))
		s.Changed, s.Tip.Ended = flag, !flag
		if flag {
			s.Summary.SignatureOK, s.AbandonedAt = &flag, &s.LastTS
		}
		checkSessionJSON(t, s)
	})
}
