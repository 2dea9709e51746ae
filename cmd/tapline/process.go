package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/processors/runner"
)

func init() { register(newProcessCmd()) }

func newProcessCmd() *cobra.Command {
	var brokers, session string
	var rf *roleFlags
	var reprocess, dryRun bool
	cmd := &cobra.Command{
		Use:   "process --brokers HOST:PORT[,...] [--config FILE]",
		Short: "Run the exactly-once processors (mask, stitch, audit)",
		Long: `Run the processors: consume tapline.frames.raw in a consumer group and, in one Kafka
transaction per batch, write masked frames to tapline.frames, stitched commands to
tapline.commands, session summaries to tapline.sessions, flat JSON audit records to
tapline.audit, and each session's state to tapline.processor.state.

Every setting has a default; the optional configuration file (docs/processors.md)
sets masking rules per target, trusted gateway keys, timeouts and topic names.
TAPLINE_* environment variables override the file (docs/configuration.md);
--brokers overrides both. SIGINT or
SIGTERM finishes the transaction in flight and leaves the group.

A frame the processors fail on is forwarded with its payload withheld, raises a
processing_failed alert, and its raw record goes to tapline.frames.deadletter.
--reprocess runs the dead-lettered frames through this build (after a fix) and emits
the frames it can now process, with a frame.reprocessed audit record each, in one
transaction; it prints one line per dead letter and exits. Running it again is
harmless (docs/processors.md "Failure containment").`,
		Example: `  tapline process --brokers 127.0.0.1:9092
  tapline process --brokers kafka-0:9092,kafka-1:9092 --config /etc/tapline/process.yaml --log-format json
  tapline process --config /etc/tapline/process.yaml --reprocess --dry-run
  tapline process --config /etc/tapline/process.yaml --reprocess --session 0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := rf.logger()
			if err != nil {
				return err
			}
			env := func(k string) (string, bool) {
				if k == "TAPLINE_KAFKA_BROKERS" && brokers != "" {
					return brokers, true
				}
				return os.LookupEnv(k)
			}
			cfg, err := runner.Load(rf.config, env)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if reprocess {
				return runReprocess(ctx, cmd.OutOrStdout(), cfg, log, runner.ReprocessOptions{SessionID: session, DryRun: dryRun})
			}
			if session != "" || dryRun {
				return errors.New("--session and --dry-run go with --reprocess")
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
			return runner.Run(ctx, cfg, log, reg)
		},
	}
	rf = addRoleFlags(cmd, "processor configuration file (YAML, optional)")
	f := cmd.Flags()
	f.StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated (default: $TAPLINE_KAFKA_BROKERS or the file's kafka.brokers)")
	f.BoolVar(&reprocess, "reprocess", false, "run the dead-lettered frames through this build, emit what now succeeds, and exit")
	f.StringVar(&session, "session", "", "with --reprocess: only this session's dead letters")
	f.BoolVar(&dryRun, "dry-run", false, "with --reprocess: report what would be emitted, emit nothing")
	return cmd
}

func runReprocess(ctx context.Context, w io.Writer, cfg *runner.Config, log *slog.Logger, opt runner.ReprocessOptions) error {
	list, err := runner.Reprocess(ctx, cfg, log, opt)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(w, "no dead-lettered frames in %s\n", cfg.Topics.DeadLetter)
		return nil
	}
	ok := 0
	for _, r := range list {
		fmt.Fprintf(w, "%s seq %d (raw partition %d offset %d): %s", r.SessionID, r.Seq, r.RawPartition, r.RawOffset, r.Status)
		if len(r.Masks) > 0 {
			fmt.Fprintf(w, " masks %v", r.Masks)
		}
		if r.Detail != "" {
			fmt.Fprintf(w, ": %s", r.Detail)
		}
		fmt.Fprintln(w)
		if r.Status == runner.ReprocessOK {
			ok++
		}
	}
	verb := "emitted"
	if opt.DryRun {
		verb = "would be emitted (dry run)"
	}
	fmt.Fprintf(w, "%d of %d frames %s\n", ok, len(list), verb)
	if ok < len(list) {
		return fmt.Errorf("%d frames stay withheld; see their status above", len(list)-ok)
	}
	return nil
}
