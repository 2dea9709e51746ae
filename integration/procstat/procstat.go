// Package procstat reads a Linux process's CPU accounting from /proc/PID/stat, for
// the benchmarks that report CPU per unit of work next to their rates.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTick is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on every
// Linux architecture Go supports.
const ClockTick = 100

// Stat is what CPU accounting needs from /proc/PID/stat. Times are in clock ticks.
type Stat struct {
	PPID int
	// Own is utime+stime (all threads); Reaped is cutime+cstime, the CPU of
	// children that exited and were waited for (a PostgreSQL backend that ended
	// during a run).
	Own, Reaped int64
	Start       int64 // starttime, to tell a reused pid from the process seen before
}

// Duration converts clock ticks to a duration.
func Duration(ticks int64) time.Duration { return time.Duration(ticks) * time.Second / ClockTick }

// Parse parses "pid (comm) state ppid ... utime stime cutime cstime ... starttime";
// comm may hold spaces and parentheses, so fields are counted after the last ')'.
func Parse(b []byte) (pid int, st Stat, ok bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return 0, Stat{}, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return 0, Stat{}, false
	}
	// After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
	// ... starttime(19).
	f := bytes.Fields(b[end+1:])
	if len(f) < 20 {
		return 0, Stat{}, false
	}
	var bad error
	n := func(i int) int64 {
		v, err := strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil {
			bad = err
		}
		return v
	}
	st = Stat{PPID: int(n(1)), Own: n(11) + n(12), Reaped: n(13) + n(14), Start: n(19)}
	return pid, st, bad == nil
}

// Read reads one process's stat.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	_, st, ok := Parse(b)
	if !ok {
		return Stat{}, fmt.Errorf("/proc/%d/stat: cannot parse %q", pid, b)
	}
	return st, nil
}
