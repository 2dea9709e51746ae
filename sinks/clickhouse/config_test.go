package clickhouse

import (
	"strings"
	"testing"
	"time"
)

func TestConfigTTL(t *testing.T) {
	c := Config{Retention: Retention{FramesDays: 90, SessionsDays: 365}, Storage: Storage{Policy: "tiered", ColdAfterDays: 7}}
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]string{
		"frames":   "toDateTime(ts) + toIntervalDay(7) TO VOLUME 'cold', toDateTime(ts) + toIntervalDay(90) DELETE",
		"sessions": "toDateTime(started_at) + toIntervalDay(7) TO VOLUME 'cold', toDateTime(started_at) + toIntervalDay(365) DELETE",
		"commands": "toDateTime(started_at) + toIntervalDay(7) TO VOLUME 'cold'",
	} {
		if got := c.TTL(table); got != want {
			t.Errorf("TTL(%s) = %q, want %q", table, got, want)
		}
	}
	if got := (&Config{}).TTL("frames"); got != "" {
		t.Errorf("no retention, no policy: TTL %q", got)
	}
}

func TestConfigRejects(t *testing.T) {
	for name, c := range map[string]Config{
		"unknown schema":          {Schema: "modern"},
		"negative retention":      {Retention: Retention{FramesDays: -1}},
		"cold without policy":     {Storage: Storage{ColdAfterDays: 3}},
		"policy without cold age": {Storage: Storage{Policy: "tiered"}},
		"policy not an ident":     {Storage: Storage{Policy: "x'; DROP", ColdAfterDays: 1}},
		"legacy with TTL":         {Schema: SchemaLegacy, Retention: Retention{FramesDays: 1}},
	} {
		c.setDefaults()
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLikeContains(t *testing.T) {
	if got := LikeContains(`DROP_Table 50% \x`); got != `%drop\_table 50\% \\x%` {
		t.Errorf("LikeContains = %s", got)
	}
	// Non-ASCII is left alone, as ClickHouse's lower() leaves it.
	if got := LikeContains("ÄB"); got != "%Äb%" {
		t.Errorf("LikeContains = %s", got)
	}
}

func TestCheckParams(t *testing.T) {
	if err := CheckParams("SELECT {a:String}, { b : UInt8 }", Params{"a": "x"}); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("unset b: %v", err)
	}
	if err := CheckParams("SELECT {a:String}", Params{"a": ""}); err != nil {
		t.Error(err)
	}
}

func TestScanInto(t *testing.T) {
	var (
		s  string
		n  int64
		u  uint64
		b  bool
		ts time.Time
		tp *time.Time
		ss []string
		m  map[string]int64
	)
	now := time.Now()
	for _, c := range []struct {
		dest, v any
	}{
		{&s, "x"}, {&n, uint32(7)}, {&u, int64(9)}, {&b, uint8(1)}, {&ts, now}, {&tp, &now},
		{&ss, []string{"a"}}, {&m, map[string]int64{"k": 1}},
	} {
		if err := ScanInto(c.dest, c.v); err != nil {
			t.Errorf("ScanInto(%T, %T): %v", c.dest, c.v, err)
		}
	}
	if s != "x" || n != 7 || u != 9 || !b || !ts.Equal(now) || tp == nil || ss[0] != "a" || m["k"] != 1 {
		t.Errorf("scanned %v %v %v %v %v %v %v %v", s, n, u, b, ts, tp, ss, m)
	}
	if err := ScanInto(&u, int64(-1)); err == nil {
		t.Error("negative into *uint64 accepted")
	}
	if err := ScanInto(&n, "7"); err == nil {
		t.Error("string into *int64 accepted")
	}
	var nilTime *time.Time
	if err := ScanInto(&tp, nilTime); err != nil || tp != nil {
		t.Errorf("NULL into **time.Time: %v %v", tp, err)
	}
}

func TestEncoderClampsTimes(t *testing.T) {
	if got := utc(time.Time{}); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("zero time stored as %v, want the epoch", got)
	}
	if got := utc(time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)); !got.Equal(minTime) {
		t.Errorf("1800 stored as %v", got)
	}
}
