package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ensureTopics checks that the raw topic exists (creating it when allowed), creates
// missing output topics, and returns the raw topic's partition count.
func (r *runner) ensureTopics(ctx context.Context) (int32, error) {
	t := r.cfg.Topics
	create := *r.cfg.CreateTopics
	td, err := r.adm.ListTopics(ctx, t.Raw)
	if err != nil {
		return 0, fmt.Errorf("list topics: %w", err)
	}
	raw, ok := td[t.Raw]
	if !ok || raw.Err != nil || len(raw.Partitions) == 0 {
		if !create && (!ok || errors.Is(raw.Err, kerr.UnknownTopicOrPartition)) {
			return 0, fmt.Errorf("raw topic %s does not exist", t.Raw)
		}
		if create {
			if _, err := r.adm.CreateTopic(ctx, r.cfg.Partitions, -1, nil, t.Raw); ignoreExists(err) != nil {
				return 0, fmt.Errorf("create %s: %w", t.Raw, err)
			}
		}
		// A topic just created (here or by someone else) can show no
		// partitions, or an error, in metadata for a while.
		if err := r.waitForTopics(ctx, t.Raw); err != nil {
			return 0, fmt.Errorf("raw topic %s: %w", t.Raw, err)
		}
		if td, err = r.adm.ListTopics(ctx, t.Raw); err != nil {
			return 0, err
		}
		raw = td[t.Raw]
	}
	n := int32(len(raw.Partitions))
	if n == 0 {
		return 0, fmt.Errorf("raw topic %s has no partitions", t.Raw)
	}
	if err := ensureStateTopic(ctx, r.adm, t.State, n, create); err != nil {
		return 0, err
	}
	if !create {
		// The dead-letter topic must exist before a frame fails: a produce to a missing
		// topic would fail the transaction and stop the processor.
		return n, r.waitForTopics(ctx, t.State, t.DeadLetter)
	}
	compact := "compact"
	outputs := []struct {
		name    string
		configs map[string]*string
	}{{t.Frames, nil}, {t.Commands, nil}, {t.Sessions, map[string]*string{"cleanup.policy": &compact}}, {t.Audit, nil},
		{t.DeadLetter, map[string]*string{"max.message.bytes": &deadLetterMaxBytes}}}
	all := []string{t.Raw, t.State, t.Frames, t.Commands, t.Sessions, t.Audit, t.DeadLetter}
	if t.AuditOCSF != "" {
		outputs = append(outputs, struct {
			name    string
			configs map[string]*string
		}{t.AuditOCSF, nil})
		all = append(all, t.AuditOCSF)
	}
	for _, o := range outputs {
		if _, err := r.adm.CreateTopic(ctx, n, -1, o.configs, o.name); ignoreExists(err) != nil {
			return 0, fmt.Errorf("create %s: %w", o.name, err)
		}
	}
	return n, r.waitForTopics(ctx, all...)
}

// deadLetterMaxBytes leaves room for the headers around a raw record of the raw
// topic's largest size.
var deadLetterMaxBytes = "2097152"

// waitForTopics waits until newly created topics show in the cluster's metadata.
func (r *runner) waitForTopics(ctx context.Context, topics ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		td, err := r.adm.ListTopics(ctx, topics...)
		if err == nil {
			missing := []string{}
			for _, name := range topics {
				if t, ok := td[name]; !ok || t.Err != nil || len(t.Partitions) == 0 {
					missing = append(missing, name)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			err = fmt.Errorf("topics %v not visible yet", missing)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ignoreExists(err error) error {
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}
