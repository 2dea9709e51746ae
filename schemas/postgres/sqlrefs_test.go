package postgres

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A statement parsed again comes from the cache with what a fresh parse finds,
// and a caller reordering its literals (maskLiterals sorts them) changes
// neither the cache nor other callers' copies.
func TestParseRefsCachedByText(t *testing.T) {
	sql := "SELECT * FROM users WHERE ssn = '123-45-6789' AND email = 'a@b.c' AND name = 'x'"
	fresh, ok := parseRefsUncached(sql)
	if !ok || len(fresh.literals) != 3 {
		t.Fatalf("parse: ok %v, %d literals", ok, len(fresh.literals))
	}
	first, _ := parseRefs(sql)
	first.literals[0], first.literals[2] = first.literals[2], first.literals[0]
	first.literals[1].col = "changed"
	again, ok := parseRefs(sql)
	if !ok || !reflect.DeepEqual(again, fresh) {
		t.Fatalf("cached refs differ from a fresh parse:\n got %+v\nwant %+v", again, fresh)
	}

	bad := "SELEC nothing FROM"
	if _, ok := parseRefs(bad); ok {
		t.Fatal("a statement that does not parse parsed")
	}
	if _, ok := parseRefs(bad); ok {
		t.Fatal("a statement that does not parse parsed from the cache")
	}
}

func TestParseRefsCacheBounded(t *testing.T) {
	long := "SELECT 1 WHERE ssn = '" + strings.Repeat("9", refsCacheText) + "'"
	parseRefs(long)
	if _, kept := refsCache.get(long); kept {
		t.Fatalf("a %d-byte statement was kept", len(long))
	}
	for i := range textCacheEntries + 10 {
		refsCache.put("SELECT "+strconv.Itoa(i), cachedRefs{ok: true})
	}
	refsCache.mu.Lock()
	n := len(refsCache.m)
	refsCache.mu.Unlock()
	if n == 0 || n > textCacheEntries {
		t.Fatalf("cache holds %d texts, bound %d", n, textCacheEntries)
	}
}

// Partitions are masked in parallel: run under -race.
func TestParseRefsConcurrent(t *testing.T) {
	sql := "INSERT INTO users (name, password) VALUES ('n', 'secret-pw')"
	want, _ := parseRefsUncached(sql)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, ok := parseRefs(sql)
				if !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v, want %+v", got, want)
					return
				}
				if len(got.literals) > 1 {
					got.literals[0], got.literals[1] = got.literals[1], got.literals[0]
				}
			}
		})
	}
	wg.Wait()
}
