package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/processors/pipeline"
	"github.com/tapline/tapline/schemas"
)

// The state topic is compacted and has (at least) as many partitions as the raw
// topic: partition p holds the state of the sessions of raw partition p, keyed by
// session id (a tombstone once a session is gone), and, as the last record of every
// transaction that touched p, a checkpoint naming the raw offset the state is at.
// State and checkpoint are written in the same transaction as the outputs and the
// group's offsets, so a committed checkpoint equals the committed offset and the state
// before it is exactly the state after processing everything before that offset.

// Values are schemas.ProcessorState (schemas/state.avsc), versioned like the
// other topics; values written before it had a schema (JSON) are still read.

// checkpointKey is the key of checkpoint records; session ids are UUIDs and never
// collide with it.
const checkpointKey = "checkpoint"

func checkpointRecord(topic string, state string, p int32, next int64) (*kgo.Record, error) {
	v, err := schemas.StateCodec().Encode(&schemas.ProcessorState{
		Checkpoint: &schemas.StateCheckpoint{Topic: topic, Partition: p, Next: next}})
	if err != nil {
		return nil, fmt.Errorf("state checkpoint: %w", err)
	}
	return &kgo.Record{Topic: state, Partition: p, Key: []byte(checkpointKey), Value: v}, nil
}

// sessionStateRecord is a session's state, or its tombstone once it is gone.
func sessionStateRecord(state string, p int32, c pipeline.StateChange) (*kgo.Record, error) {
	rec := &kgo.Record{Topic: state, Partition: p, Key: []byte(c.SessionID)}
	if c.Value == nil {
		return rec, nil
	}
	v, err := schemas.StateCodec().Encode(&schemas.ProcessorState{SessionFormat: schemas.SessionStateFormat, Session: c.Value})
	if err != nil {
		return nil, fmt.Errorf("session %s: state: %w", c.SessionID, err)
	}
	rec.Value = v
	return rec, nil
}

// loaded is a partition's state as read back from the state topic.
type loaded struct {
	proc       *pipeline.Processor
	checkpoint int64 // -1: no checkpoint
}

// errStateAhead means the state topic is further along than the group's offsets:
// someone reset the group's offsets. The processor refuses to guess.
var errStateAhead = errors.New("state topic is ahead of the group's committed offset")

// loadPartitions rebuilds the state of raw partitions from the state topic, waiting
// until each partition's checkpoint reaches the offset the group committed (the
// checkpoint's transaction markers may land a moment after the offsets'). want maps
// partition → committed offset (-1: the group has no offset for it).
func (r *runner) loadPartitions(ctx context.Context, want map[int32]int64) (map[int32]*loaded, error) {
	deadline := time.Now().Add(r.cfg.Kafka.StateLoadTimeout)
	out := map[int32]*loaded{}
	pending := want
	for {
		got, err := r.readState(ctx, keys(pending))
		if err != nil {
			return nil, err
		}
		next := map[int32]int64{}
		for p, w := range pending {
			l := got[p]
			switch {
			case w < 0:
				if l.checkpoint >= 0 {
					r.log.Warn("the group has no committed offset but the state topic has state: starting the partition afresh",
						"partition", p, "state_checkpoint", l.checkpoint)
				}
				out[p] = &loaded{proc: r.newProcessor(), checkpoint: -1}
			case l.checkpoint == w:
				out[p] = l
			case l.checkpoint > w:
				return nil, fmt.Errorf("%w: partition %d state is at offset %d, the group %q committed %d; "+
					"to reprocess, use a new group and a new state topic (see docs/processors.md)", errStateAhead, p, l.checkpoint, r.cfg.Kafka.Group, w)
			default:
				next[p] = w
			}
		}
		if len(next) == 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("state topic %s did not reach the group's committed offsets within %s (waiting for %v); "+
				"was the state topic deleted or recreated?", r.cfg.Topics.State, r.cfg.Kafka.StateLoadTimeout, next)
		}
		pending = next
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func keys(m map[int32]int64) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// readState reads state partitions from their start to their last stable offset.
func (r *runner) readState(ctx context.Context, parts []int32) (map[int32]*loaded, error) {
	topic := r.cfg.Topics.State
	ends, err := r.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("state topic %s: list offsets: %w", topic, err)
	}
	starts, err := r.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("state topic %s: list offsets: %w", topic, err)
	}
	out := map[int32]*loaded{}
	consume := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	for _, p := range parts {
		out[p] = &loaded{proc: r.newProcessor(), checkpoint: -1}
		e, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("state topic %s has no partition %d (it needs as many partitions as %s)", topic, p, r.cfg.Topics.Raw)
		}
		if e.Err != nil {
			return nil, fmt.Errorf("state topic %s partition %d: list offsets: %w", topic, p, e.Err)
		}
		s, _ := starts.Lookup(topic, p)
		if e.Offset > s.Offset {
			consume[p] = kgo.NewOffset().AtStart()
			end[p] = e.Offset
		}
	}
	if len(consume) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append(r.baseOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the last record before the stable offset is a transaction marker
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for len(end) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("state topic %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var restoreErr error
		fs.EachRecord(func(rec *kgo.Record) {
			p := rec.Partition
			l := out[p]
			stop, waiting := end[p]
			if !waiting || rec.Offset >= stop {
				return
			}
			if rec.Offset >= stop-1 {
				delete(end, p)
			}
			if rec.Attrs.IsControl() {
				return
			}
			if rec.Value == nil { // tombstone: the session is gone
				_ = l.proc.Restore(string(rec.Key), nil)
				return
			}
			v, err := schemas.DecodeState(string(rec.Key), rec.Value)
			if err != nil {
				if restoreErr == nil {
					restoreErr = fmt.Errorf("state topic %s partition %d offset %d: %w", topic, p, rec.Offset, err)
				}
				return
			}
			if c := v.Checkpoint; c != nil {
				if c.Topic != r.cfg.Topics.Raw || c.Partition != p {
					restoreErr = fmt.Errorf("state topic %s partition %d holds state of %s partition %d, not of %s partition %d",
						topic, p, c.Topic, c.Partition, r.cfg.Topics.Raw, p)
					return
				}
				l.checkpoint = c.Next
				return
			}
			if err := l.proc.Restore(string(rec.Key), v.Session); err != nil && restoreErr == nil {
				restoreErr = fmt.Errorf("state topic %s partition %d offset %d: %w", topic, p, rec.Offset, err)
			}
		})
		if restoreErr != nil {
			return nil, restoreErr
		}
	}
	return out, nil
}

// ensureStateTopic checks (or creates) the state topic with enough partitions.
func ensureStateTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, create bool) error {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return err
	}
	if t, ok := td[topic]; ok && t.Err == nil {
		if n := int32(len(t.Partitions)); n < partitions {
			return fmt.Errorf("state topic %s has %d partitions; it needs at least %d (the raw topic's)", topic, n, partitions)
		}
		return nil
	}
	if !create {
		return fmt.Errorf("state topic %s does not exist (create it compacted, with the raw topic's partition count)", topic)
	}
	cleanup, segment, maxMsg := "compact", "3600000", "8388608"
	_, err = adm.CreateTopic(ctx, partitions, -1, map[string]*string{
		"cleanup.policy": &cleanup, "segment.ms": &segment, "max.message.bytes": &maxMsg}, topic)
	return ignoreExists(err)
}
