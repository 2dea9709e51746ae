// Command benchhelper does what the benchmark scripts need from Go code:
//
//	benchhelper issuer DATA_DIR       serve the dev OIDC issuer of DATA_DIR until killed
//	benchhelper topic BROKERS TOPIC   create TOPIC (one partition) unless it exists
//	benchhelper deltopic BROKERS TOPIC  delete TOPIC (benchmarks that write gigabytes)
//	benchhelper cpu PID...            CPU µs (user+system, all threads) of each PID's process tree
//	benchhelper produce BROKERS TOPIC N  p50 and mean µs of N acknowledged produces, one at a time
//	benchhelper strictcap BROKERS TOPIC SECONDS SESSIONS  select-only transactions/s, p50 µs and its own CPU µs per
//	                                  transaction that SESSIONS strict recordings reach through the gateway's
//	                                  recorder, nothing else running
//	benchhelper warm BROKERS TOPIC MB BROKER_PID  MB MiB of large records, the broker's CPU per MiB on stderr
//	benchhelper goproxy LISTEN UPSTREAM CERT KEY CA [TOKEN_FILE USER GROUP]  a plain Go reverse proxy over TLS
//	                                  (the cost of Go's HTTP stack); with TOKEN_FILE it calls as that token
//	                                  and impersonates USER in GROUP, as the Kubernetes gateway does
//	benchhelper tcprelay LISTEN UPSTREAM  a plain Go TCP relay (the floor of a Go proxy's cost)
//	benchhelper sshrelay LISTEN UPSTREAM USER KEY KNOWN_HOSTS HOSTKEY_OUT [BROKERS TOPIC]  an SSH relay on
//	                                  x/crypto/ssh recording nothing; with BROKERS it produces the bytes that pass
//	                                  to TOPIC, one record per read, nothing else (the floor of an edge that records)
//	benchhelper http URL N CONC BODY h1|h2 TOKEN CA  N requests over CONC connections (streams with h2)
//	benchhelper rss PID STOPFILE        peak and first RSS (KiB) of PID, sampled until STOPFILE exists
//
// Tokens for the issuer come from `tapline token --data-dir DATA_DIR`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/auth/devissuer"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchhelper:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "issuer":
		iss, err := devissuer.Open(args[1])
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		fmt.Println(iss.URL())
		return iss.Serve(ctx, "")
	case len(args) == 3 && args[0] == "topic":
		return createTopic(strings.Split(args[1], ","), args[2])
	case len(args) == 3 && args[0] == "deltopic":
		return deleteTopic(strings.Split(args[1], ","), args[2])
	case len(args) >= 2 && args[0] == "cpu":
		return cpu(args[1:])
	case len(args) == 4 && args[0] == "produce":
		return produce(strings.Split(args[1], ","), args[2], args[3])
	case len(args) == 5 && args[0] == "strictcap":
		return strictCeiling(strings.Split(args[1], ","), args[2], args[3], args[4])
	case len(args) == 3 && args[0] == "tcprelay":
		return tcpRelay(args[1], args[2])
	case (len(args) == 7 || len(args) == 9) && args[0] == "sshrelay":
		var rec *kgo.Client
		if len(args) == 9 {
			var err error
			// The buffered recorder's linger: requests fill as its rounds do.
			if rec, err = recorderClient(strings.Split(args[7], ","), args[8], kgo.ProducerLinger(5*time.Millisecond)); err != nil {
				return err
			}
			defer rec.Close()
		}
		return sshRelay(args[1], args[2], args[3], args[4], args[5], args[6], rec)
	case len(args) == 5 && args[0] == "warm":
		return warm(strings.Split(args[1], ","), args[2], args[3], args[4])
	case (len(args) == 6 || len(args) == 9) && args[0] == "goproxy":
		var imp *impersonation
		if len(args) == 9 {
			imp = &impersonation{tokenFile: args[6], user: args[7], group: args[8]}
		}
		return goProxy(args[1], args[2], args[3], args[4], args[5], imp)
	case len(args) >= 1 && args[0] == "http":
		return httpLoad(args[1:])
	case len(args) == 3 && args[0] == "rss":
		return rss(args[1], args[2])
	case len(args) == 3 && args[0] == "cputrack":
		return cpuTrack(args[1], args[2])
	default:
		return errors.New("usage: benchhelper issuer DATA_DIR | topic BROKERS TOPIC | deltopic BROKERS TOPIC | cpu PID... | produce BROKERS TOPIC N | strictcap BROKERS TOPIC SECONDS SESSIONS | warm BROKERS TOPIC MB BROKER_PID | goproxy LISTEN UPSTREAM CERT KEY CA [TOKEN_FILE USER GROUP] | tcprelay LISTEN UPSTREAM | sshrelay LISTEN UPSTREAM USER KEY KNOWN_HOSTS HOSTKEY_OUT [BROKERS TOPIC] | http ... | rss PID STOPFILE | cputrack PID STOPFILE")
	}
}

func createTopic(brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}

func deleteTopic(brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	return err
}
