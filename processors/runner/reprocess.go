package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/pipeline"
	"github.com/tapline/tapline/schemas"
)

// ReprocessOptions selects what Reprocess does.
type ReprocessOptions struct {
	SessionID string // only this session's dead letters; empty: all
	DryRun    bool   // report what would be emitted, produce nothing
}

// Reprocessed is the outcome for one dead-lettered frame.
type Reprocessed struct {
	SessionID    string           `json:"session_id"`
	Seq          int64            `json:"seq"`
	RawPartition int32            `json:"raw_partition"`
	RawOffset    int64            `json:"raw_offset"`
	Status       string           `json:"status"` // ReprocessOK, ReprocessFailing, ReprocessNoContext
	Masks        map[string]int64 `json:"masks,omitempty"`
	Detail       string           `json:"detail,omitempty"`
}

// Reprocess outcomes.
const (
	ReprocessOK        = "reprocessed"   // the frame was processed and is re-emitted
	ReprocessFailing   = "still_failing" // this build fails on it too; it stays withheld
	ReprocessNoContext = "no_context"    // the session's earlier raw frames are gone (retention); it stays withheld
	ReprocessMissing   = "raw_not_found" // the raw record itself is gone; it stays withheld
)

// Reprocess runs the frames in the dead-letter topic through this build again. A
// masked frame depends on its session's earlier frames (a password prompt, a Postgres
// column list), so for each raw partition named by a dead letter it replays that
// partition's frames of the sessions concerned, from the start of the raw topic up to
// the last dead-lettered offset, through a fresh pipeline (deterministic: the same
// state the processors had), and takes the output frame at each dead-lettered seq.
// What it emits — the frame with the same session id and seq, and an audit record
// frame.reprocessed with the stable id <session>/<seq>/frame.reprocessed — goes out
// in one Kafka transaction, so it is all or nothing, and running it again emits the
// same records again: the frames table keeps one row per (session_id, seq), the last
// one written, and audit consumers deduplicate by id.
func Reprocess(ctx context.Context, cfg *Config, log *slog.Logger, opt ReprocessOptions) ([]Reprocessed, error) {
	if log == nil {
		log = slog.Default()
	}
	pcfg, err := cfg.pipelineConfig()
	if err != nil {
		return nil, err
	}
	security, err := cfg.Kafka.Security.Opts(cfg.lookupEnv)
	if err != nil {
		return nil, err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...)}, security...)
	dead, err := readTopic(ctx, base, cfg.Topics.DeadLetter, nil)
	if err != nil {
		return nil, fmt.Errorf("read the dead-letter topic %s: %w", cfg.Topics.DeadLetter, err)
	}
	// Targets by raw partition: session → seq → result slot.
	type target struct{ res *Reprocessed }
	byPart := map[int32]map[string]map[int64]*target{}
	until := map[int32]int64{}
	var results []*Reprocessed
	for _, rec := range dead {
		r := &Reprocessed{SessionID: DeadLetterHeader(rec, HeaderSessionID), Status: ReprocessMissing}
		r.Seq, _ = strconv.ParseInt(DeadLetterHeader(rec, HeaderSeq), 10, 64)
		p, err1 := strconv.ParseInt(DeadLetterHeader(rec, HeaderRawPartition), 10, 32)
		o, err2 := strconv.ParseInt(DeadLetterHeader(rec, HeaderRawOffset), 10, 64)
		if err1 != nil || err2 != nil || DeadLetterHeader(rec, HeaderRawTopic) != cfg.Topics.Raw {
			log.Warn("dead letter without a raw record of this raw topic; skipped", "partition", rec.Partition, "offset", rec.Offset)
			continue
		}
		if opt.SessionID != "" && r.SessionID != opt.SessionID {
			continue
		}
		r.RawPartition, r.RawOffset = int32(p), o
		results = append(results, r)
		if byPart[r.RawPartition] == nil {
			byPart[r.RawPartition] = map[string]map[int64]*target{}
		}
		if byPart[r.RawPartition][r.SessionID] == nil {
			byPart[r.RawPartition][r.SessionID] = map[int64]*target{}
		}
		byPart[r.RawPartition][r.SessionID][r.Seq] = &target{res: r}
		until[r.RawPartition] = max(until[r.RawPartition], o+1)
	}
	if len(results) == 0 {
		return nil, nil
	}
	var out pipeline.Output
	for part, sessions := range byPart {
		proc, err := pipeline.New(pcfg)
		if err != nil {
			return nil, err
		}
		first := map[string]int64{}
		raw, err := readTopic(ctx, base, cfg.Topics.Raw, map[int32]int64{part: until[part]})
		if err != nil {
			return nil, fmt.Errorf("read raw partition %d: %w", part, err)
		}
		for _, rec := range raw {
			targets := sessions[string(rec.Key)]
			if targets == nil {
				continue
			}
			f, err := schemas.FrameCodec().Decode(rec.Value)
			if err != nil || f.SessionID != string(rec.Key) {
				continue
			}
			if _, seen := first[f.SessionID]; !seen {
				first[f.SessionID] = f.Seq
			}
			var o pipeline.Output
			ferr := proc.Frame(f, &o)
			tg := targets[f.Seq]
			if tg == nil || rec.Offset != tg.res.RawOffset {
				continue
			}
			r := tg.res
			switch {
			case first[f.SessionID] != 0:
				r.Status, r.Detail = ReprocessNoContext, fmt.Sprintf("the raw topic starts this session at seq %d", first[f.SessionID])
			case ferr != nil:
				r.Status, r.Detail = ReprocessFailing, ferr.Error()
			default:
				r.Status = ReprocessOK
				for _, of := range o.Frames {
					if of.SessionID == f.SessionID && of.Seq == f.Seq {
						r.Masks = of.Masks
						out.Frames = append(out.Frames, of)
					}
				}
				sum, _ := proc.Summary(f.SessionID)
				a := audit.Base(audit.TypeFrameReprocessed, &sum, f.Seq, f.TS)
				for k := range r.Masks {
					a.MaskedTypes = append(a.MaskedTypes, k)
				}
				sort.Strings(a.MaskedTypes)
				out.Audit = append(out.Audit, a)
			}
		}
	}
	sort.Slice(results, func(i, j int) bool {
		if results[i].SessionID != results[j].SessionID {
			return results[i].SessionID < results[j].SessionID
		}
		return results[i].Seq < results[j].Seq
	})
	list := make([]Reprocessed, len(results))
	for i, r := range results {
		list[i] = *r
	}
	if opt.DryRun || out.Len() == 0 {
		return list, nil
	}
	return list, produceOnce(ctx, cfg, base, &out)
}

// produceOnce writes out in one transaction.
func produceOnce(ctx context.Context, cfg *Config, base []kgo.Opt, out *pipeline.Output) error {
	cl, err := kgo.NewClient(append(base, kgo.TransactionalID(cfg.Kafka.TransactionalID+"-reprocess"),
		kgo.TransactionTimeout(cfg.Kafka.TransactionTimeout),
		kgo.ProducerBatchMaxBytes(2<<20))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	r := &runner{cfg: cfg, metrics: newMetrics(nil), log: slog.New(slog.DiscardHandler), codecs: defaultCodecs()}
	var recs []*kgo.Record
	if err := r.emit(out, func(rec *kgo.Record) { recs = append(recs, rec) }); err != nil {
		return errors.Join(err, cl.EndTransaction(ctx, kgo.TryAbort))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return errors.Join(fmt.Errorf("produce: %w", err), cl.EndTransaction(ctx, kgo.TryAbort))
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}

// readTopic reads a topic's committed records from the start: up to the end offsets
// at the time of the call, or, for the partitions in until, up to those offsets.
func readTopic(ctx context.Context, base []kgo.Opt, topic string, until map[int32]int64) ([]*kgo.Record, error) {
	adm, err := kadm.NewOptClient(base...)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	stop := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		end := o.Offset
		if until != nil {
			u, ok := until[o.Partition]
			if !ok {
				return
			}
			end = min(end, u)
		}
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Offset >= end {
			return // nothing left below end (retention)
		}
		if end > 0 {
			stop[o.Partition] = end
		}
	})
	if len(stop) == 0 {
		return nil, nil
	}
	from := map[int32]kgo.Offset{}
	for p := range stop {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(stop) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := stop[r.Partition]
			if !ok {
				return
			}
			if r.Offset >= end {
				delete(stop, r.Partition)
				return
			}
			if r.Offset >= end-1 {
				delete(stop, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out, nil
}
