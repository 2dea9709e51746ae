package api

import (
	"fmt"
	"net/http"
	"sync"
)

// Defaults for the concurrency limits (Config). A follow holds its request slot too.
const (
	DefaultMaxRequests            = 64
	DefaultMaxRequestsPerIdentity = 8
	DefaultMaxFollows             = 32
	DefaultMaxFollowsPerIdentity  = 2
)

// limiter counts what is in progress, per identity and in total. Refusing at once
// (429) rather than queueing keeps a flood from holding connections and memory.
type limiter struct {
	what          string // "requests" or "follows", for the refusal
	total, perMax int

	mu  sync.Mutex
	n   int
	per map[string]int
}

func newLimiter(what string, total, per int) *limiter {
	return &limiter{what: what, total: total, perMax: per, per: map[string]int{}}
}

// acquire takes a slot for id, or says why not. release must be called once.
func (l *limiter) acquire(id string) (release func(), refusal string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.per[id] >= l.perMax:
		return nil, fmt.Sprintf("you have %d %s in progress, the limit per identity; retry when one has finished", l.per[id], l.what)
	case l.n >= l.total:
		return nil, fmt.Sprintf("the server has %d %s in progress, its limit; retry shortly", l.n, l.what)
	}
	l.n++
	l.per[id]++
	var once sync.Once
	return func() { once.Do(func() { l.release(id) }) }, ""
}

func (l *limiter) release(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.per[id]--; l.per[id] <= 0 {
		delete(l.per, id)
	}
}

// identity keys the per-identity limits: the same subject at another issuer is
// another identity.
func (c *caller) identity() string { return c.Issuer + "\x00" + c.Subject }

func tooMany(w http.ResponseWriter, refusal string) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "too_many_requests", refusal)
}

// holdFollow takes a follow slot for a request that follows a live session; it
// answers 429 and returns ok false when none is free. The caller defers release.
func (s *server) holdFollow(w http.ResponseWriter, c *caller) (release func(), ok bool) {
	release, refusal := s.follows.acquire(c.identity())
	if refusal != "" {
		tooMany(w, refusal)
		return nil, false
	}
	return release, true
}
