// Command svcprobe is the readiness probe integration/services.sh runs after
// starting a service. It is not part of tapline.
//
//	svcprobe kafka ADDR [TIMEOUT]   wait until a metadata request to ADDR lists a
//	                                broker, then print the broker's API-version guess
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if len(os.Args) < 3 || os.Args[1] != "kafka" {
		fmt.Fprintln(os.Stderr, "usage: svcprobe kafka ADDR [TIMEOUT]")
		os.Exit(2)
	}
	timeout := 60 * time.Second
	if len(os.Args) > 3 {
		d, err := time.ParseDuration(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "svcprobe:", err)
			os.Exit(2)
		}
		timeout = d
	}
	info, err := probeKafka(os.Args[2], timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "svcprobe:", err)
		os.Exit(1)
	}
	fmt.Println(info)
}

func probeKafka(addr string, timeout time.Duration) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		info, err := describe(ctx, adm)
		cancel()
		if err == nil {
			return info, nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("kafka at %s not ready after %s: %v", addr, timeout, last)
}

func describe(ctx context.Context, adm *kadm.Client) (string, error) {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return "", err
	}
	if len(md.Brokers) == 0 || md.Controller < 0 {
		return "", errors.New("metadata lists no broker or no controller yet")
	}
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			return "", v.Err
		}
		feats := []string{}
		for _, f := range v.Raw().FinalizedFeatures {
			feats = append(feats, fmt.Sprintf("%s=%d", f.Name, f.MaxVersionLevel))
		}
		sort.Strings(feats)
		parts = append(parts, fmt.Sprintf("broker %d: api versions look like Kafka %s; features %s",
			v.NodeID, v.VersionGuess(), strings.Join(feats, ",")))
	}
	return strings.Join(parts, "\n"), nil
}
