package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// rss samples the resident set of pid every 50 ms until stopFile exists and
// prints "first_kib peak_kib": a streaming edge keeps peak near first however
// many bytes pass through it.
func rss(pid, stopFile string) error {
	first, err := rssKiB(pid)
	if err != nil {
		return err
	}
	peak := first
	for {
		if _, err := os.Stat(stopFile); err == nil {
			break
		}
		if v, err := rssKiB(pid); err == nil && v > peak {
			peak = v
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println(first, peak)
	return nil
}

func rssKiB(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := bytes.Fields(sc.Bytes()); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			return strconv.ParseInt(string(f[1]), 10, 64)
		}
	}
	return 0, fmt.Errorf("pid %s: no VmRSS", pid)
}
