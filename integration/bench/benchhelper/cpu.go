package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tapline/tapline/integration/procstat"
)

// readStats reads every process's stat once, so a tree is summed from one snapshot.
func readStats() map[int]procstat.Stat {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make(map[int]procstat.Stat, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		pid, st, ok := procstat.Parse(b)
		if ok {
			out[pid] = st
		}
	}
	return out
}

// tree lists pid and its descendants in one snapshot (none if pid is gone).
func tree(all map[int]procstat.Stat, pid int) []int {
	children := map[int][]int{}
	for p, st := range all {
		children[st.PPID] = append(children[st.PPID], p)
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
func treeMicros(all map[int]procstat.Stat, pid int) int64 {
	var ticks int64
	for _, p := range tree(all, pid) {
		ticks += all[p].Own + all[p].Reaped
	}
	return ticks * 1_000_000 / procstat.ClockTick
}

// cpu prints, on one line, the CPU µs of each pid's process tree (0 for "-" or a
// process that is gone).
func cpu(pids []string) error {
	roots := make([]int, len(pids))
	for i, s := range pids {
		roots[i], _ = strconv.Atoi(s) // 0 for "-": no tree
	}
	all := stableStats(roots)
	for i, pid := range roots {
		var us int64
		if pid > 0 {
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

// stableStats reads snapshots until two in a row agree on the roots' trees:
// the same processes, with the same CPU of reaped children. A child that exits
// and is reaped while one snapshot is read can be missed (its parent read
// before the reaping, the child after it was gone) or counted twice (the other
// way round); a Postgres backend ending with its client's session does so just
// when a bench row reads the CPU it used.
func stableStats(roots []int) map[int]procstat.Stat {
	prev := readStats()
	for range 8 {
		cur := readStats()
		if sameTrees(prev, cur, roots) {
			return cur
		}
		prev = cur
	}
	return prev
}

func sameTrees(a, b map[int]procstat.Stat, roots []int) bool {
	for _, r := range roots {
		ta, tb := tree(a, r), tree(b, r)
		if len(ta) != len(tb) {
			return false
		}
		for _, p := range ta {
			sb, ok := b[p]
			if !ok || sb.Start != a[p].Start || sb.Reaped != a[p].Reaped {
				return false
			}
		}
	}
	return true
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
			if s, known := procs[p]; known && s.start == st.Start {
				continue
			}
			base := int64(0) // born since the first scan: all its CPU counts
			if first {
				base = st.Own
			}
			procs[p] = &seen{start: st.Start, base: base}
		}
		for p, s := range procs {
			if st, ok := all[p]; ok && st.Start == s.start {
				s.last = st.Own
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
	fmt.Println(ticks * 1_000_000 / procstat.ClockTick)
	return nil
}
