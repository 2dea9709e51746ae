package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// strictCeiling runs sessions strict recordings through the gateway's own
// recorder, each recording a select-only transaction's frames (the statement,
// waited for as a strict gateway waits before forwarding it, then the four
// answers) one after the other, for the given seconds, and prints
// "transactions_per_s p50_us cpu_us_per_transaction" (the last this process's
// own, from getrusage over the measured seconds). Nothing else runs: no agent,
// no target, no relay, so this is the most strict recording of that many
// sessions can do on this machine with this broker.
func strictCeiling(brokers []string, topic, seconds, sessions string) error {
	secs, err := strconv.ParseFloat(seconds, 64)
	if err != nil || secs <= 0 {
		return fmt.Errorf("seconds %q: want a positive number", seconds)
	}
	n, err := strconv.Atoi(sessions)
	if err != nil || n < 1 {
		return fmt.Errorf("sessions %q: want a positive number", sessions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs*float64(time.Second))+time.Minute)
	defer cancel()
	rec, err := recorder.New(ctx, recorder.Config{Brokers: brokers, Topic: topic, Mode: recorder.Strict, GatewayID: "bench-strictcap"}, nil)
	if err != nil {
		return err
	}
	defer rec.Close(context.Background())
	cpu0 := ownCPU()
	stop := time.Now().Add(time.Duration(secs * float64(time.Second)))
	took := make([][]time.Duration, n)
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- strictSession(ctx, rec, i, stop, &took[i]) }()
	}
	for range n {
		if err := <-errs; err != nil {
			return err
		}
	}
	cpu := ownCPU() - cpu0
	all := slices.Concat(took...)
	slices.Sort(all)
	fmt.Printf("%.0f %d %.1f\n", float64(len(all))/secs, all[len(all)/2].Microseconds(), float64(cpu.Microseconds())/float64(len(all)))
	return nil
}

// ownCPU is the user and system time this process used so far.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Sizes of a pgbench -S transaction's messages as the Postgres edge records them.
var (
	selectQuery = append([]byte{'Q', 0, 0, 0, 57}, "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;\x00"...)
	selectReply = [][]byte{make([]byte, 33), make([]byte, 13), make([]byte, 14), {'Z', 0, 0, 0, 5, 'I'}}
	replyKinds  = []string{"RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"}
)

func strictSession(ctx context.Context, rec *recorder.Recorder, i int, stop time.Time, took *[]time.Duration) error {
	s, err := rec.Start(ctx, recorder.Meta{Protocol: schemas.Postgres, Start: schemas.SessionStart{
		Issuer: "https://bench", Subject: fmt.Sprintf("strictcap-%d", i), Target: "bench", ClientAddr: "127.0.0.1:1"}})
	if err != nil {
		return err
	}
	for time.Now().Before(stop) {
		t0 := time.Now()
		if err := s.Client(ctx, "Query", 0, selectQuery); err != nil {
			return err
		}
		for j, p := range selectReply {
			if err := s.Server(replyKinds[j], 0, p); err != nil {
				return err
			}
		}
		*took = append(*took, time.Since(t0))
	}
	return s.End(ctx, "client terminated")
}
