package clickhouse

import "testing"

// A page stops before the frame that would take it over its byte budget, but
// never holds fewer than one frame, so a fragment larger than the budget is
// still read.
func TestCutPage(t *testing.T) {
	sz := func(bytes ...uint64) []pageSize {
		out := make([]pageSize, len(bytes))
		for i, b := range bytes {
			out[i] = pageSize{seq: int64(10 + i), bytes: b}
		}
		return out
	}
	for _, c := range []struct {
		name     string
		sizes    []pageSize
		wantLast int64
		wantN    int
	}{
		{"empty", nil, 0, 0},
		{"all fit", sz(10, 20, 30), 12, 3},
		{"exactly the budget", sz(50, 50), 11, 2},
		{"cut before the frame over the budget", sz(40, 40, 40), 11, 2},
		{"one frame over the budget alone", sz(500, 1), 10, 1},
	} {
		last, n := cutPage(c.sizes, 100)
		if last != c.wantLast || n != c.wantN {
			t.Errorf("%s: cutPage = (%d, %d), want (%d, %d)", c.name, last, n, c.wantLast, c.wantN)
		}
	}
}
