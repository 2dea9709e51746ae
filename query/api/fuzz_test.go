package api

import (
	"testing"
	"time"

	"github.com/tapline/tapline/sinks/clickhouse"
)

func FuzzReadStatement(f *testing.F) {
	for _, s := range []string{"SELECT 1", "/* x */ WITH a AS (SELECT 1) SELECT * FROM a", "-- c\nDROP TABLE t", "((select", "/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		readStatement(q) // must return, whatever the input
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(clickhouse.SessionCursor{StartedAt: time.Unix(1700000000, 0), SessionID: "01a2"}))
	f.Add("!!")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		back, err := decodeCursor(encodeCursor(c))
		if err != nil || back.SessionID != c.SessionID || !back.StartedAt.Equal(c.StartedAt) {
			t.Fatalf("cursor %q does not survive a round trip: %+v %v", s, back, err)
		}
	})
}
