package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

// params of one campaign run.
type params struct {
	load    time.Duration // how long agent sessions are started
	workers int           // sessions at a time
	rounds  int           // each fault kind at least this many times
	spread  time.Duration // random pause before each fault
	outage  time.Duration // store unavailable this long
	idle    time.Duration // processors' idle_timeout: abandoned after this
	parts   int           // partitions of the run's topics
	seed    uint64
}

// TestChaosShort is the campaign in `make test`: one fault of each kind.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("fault campaign: integration test")
	}
	// The load runs until every fault is over (about three minutes here), so
	// its own time is short.
	// Three partitions a topic: a restarted broker recovers half as many logs.
	campaign(t, params{load: 60 * time.Second, workers: 6, rounds: 1, spread: 3 * time.Second,
		outage: 20 * time.Second, idle: 20 * time.Second, parts: 3, seed: seedFromEnv(t)})
}

// TestChaosCampaign is `make chaos`: CHAOS_DURATION of load (default 10m),
// 50 sessions at a time, every fault kind repeated.
func TestChaosCampaign(t *testing.T) {
	d := os.Getenv("CHAOS_DURATION")
	if d == "" {
		t.Skip("set CHAOS_DURATION (make chaos)")
	}
	dur, err := time.ParseDuration(d)
	if err != nil {
		t.Fatalf("CHAOS_DURATION=%q: %v", d, err)
	}
	workers := 50
	if w, err := strconv.Atoi(os.Getenv("CHAOS_CONCURRENCY")); err == nil && w > 0 {
		workers = w
	}
	// Faults follow each other for the whole duration; every kind at least
	// once (a round takes three to five minutes on two loaded cores).
	campaign(t, params{load: dur, workers: workers, rounds: 1, spread: 10 * time.Second,
		outage: time.Minute, idle: 30 * time.Second, parts: 6, seed: seedFromEnv(t)})
}

func seedFromEnv(t *testing.T) uint64 {
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", v, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func campaign(t *testing.T, p params) {
	t0 := time.Now()
	// The binary builds while the cluster starts: both take minutes on a loaded machine.
	dir := newRunDir(t)
	type built struct {
		bin string
		err error
	}
	bc := make(chan built, 1)
	go func() { b, err := build(dir); bc <- built{b, err} }()
	cl := kafkaCluster(t)
	b := <-bc
	if b.err != nil {
		t.Fatal(b.err)
	}
	s := startSystem(t, cl, dir, b.bin, p.idle, p.parts)
	t.Logf("campaign %s seed %d (CHAOS_SEED=%d reproduces the schedule), logs in %s", s.run, p.seed, p.seed, s.dir)
	t.Cleanup(func() {
		if t.Failed() {
			for _, pr := range s.procs() {
				t.Logf("%s log (last lines of %s):\n%s", pr.name, pr.logf, tail(pr.logf, 15))
			}
			return
		}
		_, _ = s.chQuery("DROP DATABASE IF EXISTS " + s.db)
		_, _ = s.chQuery("DROP DATABASE IF EXISTS " + s.refDB)
	})
	pgOff := s.pg.LogOffset(t)
	auditor := s.token(s.run+"-auditor", auditors)

	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	var brokerRSS int64
	go func() {
		defer close(rssDone)
		for {
			for _, pr := range s.procs() {
				pr.sampleRSS()
			}
			brokerRSS = max(brokerRSS, cl.peakRSS())
			select {
			case <-stopRSS:
				return
			case <-time.After(time.Second):
			}
		}
	}()

	l := newLoad(s)
	fl := &faultLog{}
	stopLoad, stopFaults := make(chan struct{}), make(chan struct{})
	loadDone, faultsDone, probesDone := make(chan struct{}), make(chan struct{}), make(chan *probe, 1)
	minDone := make(chan struct{})
	go func() { l.run(p.workers, p.seed, stopLoad); close(loadDone) }()
	go func() { s.faults(p.seed, p.rounds, p.outage, p.spread, stopFaults, minDone, fl); close(faultsDone) }()
	go func() { probesDone <- s.probes(l, fl, stopLoad) }()

	// The load runs its time and at least until each fault kind happened
	// p.rounds times; faults go on at random moments until then.
	<-time.After(p.load)
	<-minDone
	close(stopFaults)
	<-faultsDone
	close(stopLoad)
	<-loadDone
	pr := <-probesDone
	loadEnd := time.Now()

	t.Logf("load and faults done after %s", time.Since(t0).Round(time.Second))
	// No fault from here on: the reference replay starts now and catches up
	// while the pipeline drains (sessions of killed gateways are abandoned
	// after idle).
	s.startReference()
	s.waitDrained(s.db, 10*time.Minute)
	s.waitDrained(s.refDB, 10*time.Minute)
	waitFor(t, 5*time.Minute, "reference replay caught up", func() error {
		a, err1 := s.chCount(fmt.Sprintf("SELECT uniqExact(session_id, seq) FROM %s.frames", s.db))
		b, err2 := s.chCount(fmt.Sprintf("SELECT uniqExact(session_id, seq) FROM %s.frames", s.refDB))
		if err1 != nil || err2 != nil || a != b {
			return fmt.Errorf("frames: pipeline %d, replay %d (%v %v)", a, b, err1, err2)
		}
		return nil
	})
	close(stopRSS)
	<-rssDone
	t.Logf("drained and replayed after %s", time.Since(t0).Round(time.Second))

	viaBuffered := map[string]bool{}
	for _, o := range l.outcomes {
		if o.gateway == bufferedGateway {
			viaBuffered[o.sub] = true
		}
	}
	pgc, shc, bufc := s.completeness(s.pg.LogSince(t, pgOff), viaBuffered)
	checks := []check{pgc, shc, bufc, s.seqCheck(), s.settledReference(3 * time.Minute), s.auditCheck(), s.lifecycle(fl, auditor), s.agentSide(l.outcomes, fl)}
	report(t, s, p, l, fl, pr, checks, brokerRSS, loadEnd.Sub(t0))
}

// settledReference compares with the reference replay until both sides agree
// or limit passes: either sink may still hold its last batch (a session's
// summary and its commands can land in different batches), while a real
// difference stays and is reported.
func (s *system) settledReference(limit time.Duration) check {
	deadline := time.Now().Add(limit)
	for {
		c := s.reference()
		if c.ok || time.Now().After(deadline) {
			return c
		}
		time.Sleep(time.Second)
	}
}

// waitDrained waits until the store of db holds sessions and none is active.
func (s *system) waitDrained(db string, limit time.Duration) {
	waitFor(s.t, limit, db+" drained (no active session)", func() error {
		n, err := s.chCount(fmt.Sprintf(`SELECT count() FROM (SELECT session_id, argMax(status, version) AS st FROM %s.sessions GROUP BY session_id) WHERE st = 'active'`, db))
		if err != nil {
			return err
		}
		all, err := s.chCount(fmt.Sprintf("SELECT uniqExact(session_id) FROM %s.sessions", db))
		if err != nil || all == 0 || n > 0 {
			return fmt.Errorf("%d of %d sessions active (%v)", n, all, err)
		}
		return nil
	})
}

// startReference replays the raw topic with one processor and one sink that
// are never disturbed, into their own topics and database.
func (s *system) startReference() {
	p := s.newProcessor("1", "ref", s.idle)
	k := s.newSink("1", "ref", s.refDB, s.ch.Addr)
	s.extraMu.Lock()
	s.extra = append(s.extra, p, k)
	s.extraMu.Unlock()
	p.start(s.t)
	k.start(s.t)
}

func report(t *testing.T, s *system, p params, l *load, fl *faultLog, pr *probe, checks []check, brokerRSS int64, took time.Duration) {
	var b strings.Builder
	kinds := map[string]int{}
	for _, o := range l.outcomes {
		kinds[o.kind]++
	}
	fmt.Fprintf(&b, "\nchaos %s: seed %d, %d sessions (%d at a time) in %s: %v\n", s.run, p.seed, len(l.outcomes), p.workers, took.Round(time.Second), kinds)
	fmt.Fprintf(&b, "%-16s %-30s %s\n", "fault", "what", "outcome")
	for _, w := range fl.windows {
		res := "recovered in " + w.to.Sub(w.from).Round(100*time.Millisecond).String()
		if w.err != nil {
			res = "ERROR " + w.err.Error()
		}
		fmt.Fprintf(&b, "%-16s %-30s %s\n", w.kind, w.detail, res)
	}
	fmt.Fprintf(&b, "\n%-4s %-58s %s\n", "", "check", "result")
	for _, c := range checks {
		mark := "ok"
		if !c.ok {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%-4s %-58s %s\n", mark, c.name, c.result)
		for _, d := range c.detail {
			fmt.Fprintf(&b, "       %s\n", d)
		}
	}
	fmt.Fprintf(&b, "\nedge-to-queryable outside faults: %s\n", percentiles(pr.outside))
	fmt.Fprintf(&b, "edge-to-queryable during faults:  %s\n", percentiles(pr.during))
	rss := map[string]int64{"kafka broker": brokerRSS}
	for _, x := range s.procs() {
		role := x.role
		if strings.Contains(x.name, "ref") {
			continue
		}
		rss[role] = max(rss[role], x.peak())
	}
	fmt.Fprintf(&b, "peak RSS:")
	for _, role := range []string{"gateway", "process", "sink", "query", "kafka broker"} {
		fmt.Fprintf(&b, " %s %d MiB", role, rss[role]>>20)
	}
	b.WriteByte('\n')
	t.Log(b.String())
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(b.String()), 0o644)
	}
	for _, w := range fl.windows {
		if w.err != nil {
			t.Errorf("fault %s (%s): %v", w.kind, w.detail, w.err)
		}
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("check failed: %s: %s", c.name, c.result)
		}
	}
}

func ctxTimeout(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	time.AfterFunc(d, cancel)
	return ctx
}

var _ = testenv.Hint
