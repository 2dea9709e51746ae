package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/integration/procstat"
)

// Warm-up traffic: rounds of warmRound records of warmRecord bytes, the
// shape of a gateway's buffered stream (a group-commit round of exec, scp or
// body frames), half of them zeros (franz-go sends those batches snappy
// compressed, so the broker decompresses them to validate) and half random
// (sent uncompressed).
const (
	warmRecord = 24 << 10
	warmRound  = 20
	warmChunk  = 256 << 20
)

// warm produces mb MiB of large records through the recorder's producer
// options, printing the broker's CPU per MiB of each 256 MiB to stderr. A
// fresh broker's JVM compiles its large-record paths over the first GiBs: 64
// MiB chunks of such traffic cost a new broker 12.5 ms of CPU per MiB at first,
// mostly 1–2 ms after 1.5 GiB and 0.6–1.2 ms after 3 GiB, where the test
// services' long-running broker is (~1 ms). Rows measured before that count
// the warm-up.
func warm(brokers []string, topic, size, brokerPID string) error {
	mb, err := strconv.Atoi(size)
	if err != nil || mb < 1 {
		return fmt.Errorf("size %q: want MiB, a positive number", size)
	}
	pid, err := strconv.Atoi(brokerPID)
	if err != nil {
		return fmt.Errorf("broker pid %q: %w", brokerPID, err)
	}
	cl, err := recorderClient(brokers, topic)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	random := make([]byte, warmRecord)
	_, _ = rand.Read(random)
	zeros := make([]byte, warmRecord)
	for done := 0; done < mb<<20; {
		chunk := min(warmChunk, mb<<20-done)
		before, err := procstat.Read(pid)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := warmChunkOf(ctx, cl, chunk, zeros, random); err != nil {
			return err
		}
		after, err := procstat.Read(pid)
		if err != nil {
			return err
		}
		done += chunk
		perMiB := procstat.Duration(after.Own-before.Own) / time.Duration(chunk>>20)
		fmt.Fprintf(os.Stderr, "warm: %d/%d MiB, %.0f MiB/s, broker %d µs of CPU per MiB\n",
			done>>20, mb, float64(chunk>>20)/time.Since(start).Seconds(), perMiB.Microseconds())
	}
	return nil
}

// warmChunkOf produces n bytes in rounds, each waited for, like the
// recorder's one round in flight.
func warmChunkOf(ctx context.Context, cl *kgo.Client, n int, zeros, random []byte) error {
	round := make([]*kgo.Record, warmRound)
	for sent := 0; sent < n; sent += warmRound * warmRecord {
		for i := range round {
			v := zeros
			if (sent/warmRecord+i)%2 == 1 {
				v = random
			}
			round[i] = &kgo.Record{Key: []byte("warm"), Value: v}
		}
		if err := cl.ProduceSync(ctx, round...).FirstErr(); err != nil {
			return err
		}
	}
	return nil
}
