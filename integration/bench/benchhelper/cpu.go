package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// procStat is what the CPU accounting needs from /proc/PID/stat.
type procStat struct {
	ppid int
	// own is utime+stime (all threads); reaped is cutime+cstime, the CPU of
	// children that exited and were waited for (a PostgreSQL backend that
	// ended during the run).
	own, reaped int64
	start       int64 // starttime, to tell a reused pid from the process seen before
}

// readStats reads every process's stat once, so a tree is summed from one snapshot.
func readStats() map[int]procStat {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make(map[int]procStat, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		pid, st, ok := parseStat(b)
		if ok {
			out[pid] = st
		}
	}
	return out
}

// parseStat parses "pid (comm) state ppid ... utime stime cutime cstime ...";
// comm may hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte) (int, procStat, bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return 0, procStat{}, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return 0, procStat{}, false
	}
	f := bytes.Fields(b[end+1:])
	// After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
	// ... starttime(19).
	if len(f) < 20 {
		return 0, procStat{}, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(string(f[i]), 10, 64); return v }
	return pid, procStat{ppid: int(n(1)), own: n(11) + n(12), reaped: n(13) + n(14), start: n(19)}, true
}

// tree lists pid and its descendants in one snapshot (none if pid is gone).
func tree(all map[int]procStat, pid int) []int {
	children := map[int][]int{}
	for p, st := range all {
		children[st.ppid] = append(children[st.ppid], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		if _, ok := all[p]; !ok {
			return
		}
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return out
}

// treeMicros is the CPU time of pid and its descendants, live and reaped, in µs.
func treeMicros(all map[int]procStat, pid int) int64 {
	var ticks int64
	for _, p := range tree(all, pid) {
		ticks += all[p].own + all[p].reaped
	}
	return ticks * 1_000_000 / clockTick
}

// cpu prints, on one line, the CPU µs of each pid's process tree (0 for "-" or a
// process that is gone).
func cpu(pids []string) error {
	all := readStats()
	for i, s := range pids {
		var us int64
		if pid, err := strconv.Atoi(s); err == nil {
			us = treeMicros(all, pid)
		}
		if i > 0 {
			fmt.Print(" ")
		}
		fmt.Print(us)
	}
	fmt.Println()
	return nil
}

// cpuTrack prints, once stopFile exists, the CPU µs that pid's process tree
// spent since the call, sampling every 50 ms. Unlike cpu, it does not rely on
// reaping: OpenSSH's privilege-separated sshd leaves a session's processes to
// exit on their own, so their CPU never reaches the listener's cutime. Each
// process seen in the tree is followed until it exits, even once re-parented;
// what a process spends in its last sampling interval, or a process shorter
// than one, is missed.
func cpuTrack(pid, stopFile string) error {
	root, err := strconv.Atoi(pid)
	if err != nil {
		return fmt.Errorf("pid %q: %w", pid, err)
	}
	type seen struct{ start, base, last int64 }
	procs := map[int]*seen{}
	scan := func(first bool) {
		all := readStats()
		for _, p := range tree(all, root) {
			st := all[p]
			if s, known := procs[p]; known && s.start == st.start {
				continue
			}
			base := int64(0) // born since the first scan: all its CPU counts
			if first {
				base = st.own
			}
			procs[p] = &seen{start: st.start, base: base}
		}
		for p, s := range procs {
			if st, ok := all[p]; ok && st.start == s.start {
				s.last = st.own
			}
		}
	}
	scan(true)
	for {
		if _, err := os.Stat(stopFile); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
		scan(false)
	}
	scan(false)
	var ticks int64
	for _, s := range procs {
		ticks += max(s.last-s.base, 0)
	}
	fmt.Println(ticks * 1_000_000 / clockTick)
	return nil
}
