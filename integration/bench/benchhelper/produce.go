package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/ingest/recorder"
)

// produce measures n acknowledged produces, one at a time, of a 300-byte
// record (a select-only round's typical frame) with the recorder's producer
// options, and prints "p50_us mean_us": the floor of a strict CLIENT frame.
func produce(brokers []string, topic, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return fmt.Errorf("count %q: want a positive number", count)
	}
	cl, err := recorderClient(brokers, topic)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rec := func() *kgo.Record { return &kgo.Record{Key: []byte("bench"), Value: make([]byte, 300)} }
	for range 20 { // connections and metadata
		if err := cl.ProduceSync(ctx, rec()).FirstErr(); err != nil {
			return err
		}
	}
	took := make([]time.Duration, n)
	var sum time.Duration
	for i := range took {
		start := time.Now()
		if err := cl.ProduceSync(ctx, rec()).FirstErr(); err != nil {
			return err
		}
		took[i] = time.Since(start)
		sum += took[i]
	}
	slices.Sort(took)
	fmt.Println(took[n/2].Microseconds(), (sum / time.Duration(n)).Microseconds())
	return nil
}

// recorderClient is a client with the gateway recorder's producer options
// (acks, compression, partitioning), so that what it measures is what a
// gateway's produces cost.
func recorderClient(brokers []string, topic string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append(recorder.ProducerOpts(recorder.Config{Topic: topic}), kgo.SeedBrokers(brokers...))
	opts = append(opts, extra...)
	return kgo.NewClient(opts...)
}
