package chaos

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// fault kinds, each injected at least once per run.
var faultKinds = []string{"broker-kill", "broker-pause", "processor-kill", "sink-kill", "gateway-kill", "store-outage", "rebalance"}

// faultLog is what was injected, when, for the checks and the report.
type faultLog struct {
	mu      sync.Mutex
	windows []window
	// gatewayKills[i] are the moments gateway i was SIGKILLed.
	gatewayKills map[int][]time.Time
}

type window struct {
	kind, detail string
	from, to     time.Time
	err          error
}

// overlaps: a fault was under way at some moment between from and to.
func (f *faultLog) overlaps(from, to time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.windows {
		if !to.Before(w.from) && (w.to.IsZero() || !from.After(w.to)) {
			return true
		}
	}
	return false
}

// faults injects the kinds, round after round, each round in a seeded random
// order at seeded random moments; one fault at a time, each followed by
// recovery (a broker's replicas back in sync) so that faults never add up
// beyond what RF=3 and min.insync.replicas=2 are built for. The first
// minRounds rounds always complete (minDone is closed then); after them stop
// ends the campaign's faults before the next one.
func (s *system) faults(seed uint64, minRounds int, outage time.Duration, spread time.Duration, stop <-chan struct{}, minDone chan<- struct{}, fl *faultLog) {
	rng := rand.New(rand.NewPCG(seed, 7))
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for round := 0; ; round++ {
		if round == minRounds {
			close(minDone)
		}
		kinds := append([]string{}, faultKinds...)
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, kind := range kinds {
			pause := time.Duration(rng.Int64N(int64(spread)) + int64(2*time.Second))
			if round >= minRounds {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				if stopped() {
					return
				}
			} else {
				time.Sleep(pause)
			}
			s.injectLogged(kind, rng, outage, fl)
		}
	}
}

func (s *system) injectLogged(kind string, rng *rand.Rand, outage time.Duration, fl *faultLog) {
	w := window{kind: kind, from: time.Now()}
	fl.mu.Lock()
	fl.windows = append(fl.windows, w)
	idx := len(fl.windows) - 1
	fl.mu.Unlock()
	w.detail, w.err = s.inject(kind, rng, outage, fl)
	w.to = time.Now()
	s.t.Logf("fault %s (%s): %s, err %v", kind, w.detail, w.to.Sub(w.from).Round(time.Second), w.err)
	fl.mu.Lock()
	fl.windows[idx] = w
	fl.mu.Unlock()
}

func (s *system) inject(kind string, rng *rand.Rand, outage time.Duration, fl *faultLog) (string, error) {
	raw := s.topics()
	switch kind {
	case "broker-kill":
		n := 1 + rng.IntN(3)
		if err := s.cl.kill(n); err != nil {
			return "", err
		}
		time.Sleep(5 * time.Second) // the fault's length: the cluster runs on two brokers
		if err := s.cl.start(n); err != nil {
			return "", err
		}
		return "broker " + strconv.Itoa(n), s.cl.waitInSync(5*time.Minute, raw...)
	case "broker-pause":
		n := 1 + rng.IntN(3)
		s.cl.signal(n, syscall.SIGSTOP)
		// Past the broker's session timeout (9 s) and the clients' group session timeouts (10 s).
		time.Sleep(15 * time.Second)
		s.cl.signal(n, syscall.SIGCONT)
		return "broker " + strconv.Itoa(n) + " 15s", s.cl.waitInSync(5*time.Minute, raw...)
	case "processor-kill", "sink-kill":
		ps := s.processors
		if kind == "sink-kill" {
			ps = s.sinks
		}
		p := ps[rng.IntN(len(ps))]
		p.kill()
		time.Sleep(2 * time.Second)
		p.start(s.t)
		return p.name, nil
	case "gateway-kill":
		i := rng.IntN(len(s.gateways))
		fl.mu.Lock()
		if fl.gatewayKills == nil {
			fl.gatewayKills = map[int][]time.Time{}
		}
		fl.gatewayKills[i] = append(fl.gatewayKills[i], time.Now())
		fl.mu.Unlock()
		s.gateways[i].kill()
		time.Sleep(2 * time.Second)
		s.gateways[i].start(s.t)
		return s.gateways[i].name, s.gatewayUp(i)
	case "store-outage":
		s.proxy.setCut(true)
		time.Sleep(outage)
		s.proxy.setCut(false)
		return outage.String(), nil
	case "rebalance":
		p := s.newProcessor("x"+strconv.Itoa(rng.IntN(1000)), "", s.idle)
		k := s.newSink("x"+strconv.Itoa(rng.IntN(1000)), "", s.db, s.proxy.addr())
		s.extraMu.Lock()
		s.extra = append(s.extra, p, k)
		s.extraMu.Unlock()
		p.start(s.t)
		k.start(s.t)
		time.Sleep(10 * time.Second)
		p.stop()
		k.stop()
		return p.name + ", " + k.name + " added then removed", nil
	}
	return "", fmt.Errorf("unknown fault %s", kind)
}
