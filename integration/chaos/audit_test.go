package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// auditRecords reads a whole audit topic (committed records only, as a SIEM
// does) and returns the records by id.
func (s *system) auditRecords(topic string) (map[string]map[string]any, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cl.brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Transaction markers come through too: a partition's last stable offset
		// is usually just past a commit marker, and reaching it means done.
		kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The last stable offsets: what a read_committed reader can reach.
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	out := map[string]map[string]any{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %d partitions not read to the end: %w", topic, len(left), err)
		}
		for _, e := range fs.Errors() {
			return nil, fmt.Errorf("%s/%d: %w", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var m map[string]any
			if !r.Attrs.IsControl() && json.Unmarshal(r.Value, &m) == nil {
				id, _ := m["id"].(string)
				out[id] = m
			}
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out, nil
}

// auditCheck compares the audit records of the pipeline under faults with
// those of the uninterrupted replay. session.abandoned and session.resumed
// follow the processor's clock (a processor that saw no frame for idle_timeout
// while a broker hung abandons, then resumes), so they are compared as the
// final state: which sessions stayed abandoned.
func (s *system) auditCheck() check {
	c := check{name: "audit records = uninterrupted replay", ok: true}
	got, err1 := s.auditRecords(s.topic("audit"))
	want, err2 := s.auditRecords(s.topic("refaudit"))
	if err1 != nil || err2 != nil {
		c.fail("read audit topics: %v %v", err1, err2)
		return c
	}
	gotAb, wantAb := stayedAbandoned(got), stayedAbandoned(want)
	var diff []string
	for id, w := range want {
		if clockRecord(w) {
			continue
		}
		if g, ok := got[id]; !ok {
			diff = append(diff, "missing "+id)
		} else if !reflect.DeepEqual(g, w) {
			diff = append(diff, fmt.Sprintf("differs %s: %v != replay %v", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok && !clockRecord(g) {
			diff = append(diff, "extra "+id)
		}
	}
	if !reflect.DeepEqual(gotAb, wantAb) {
		diff = append(diff, fmt.Sprintf("abandoned at the end: %d sessions, replay %d", len(gotAb), len(wantAb)))
	}
	sort.Strings(diff)
	for _, d := range diff {
		c.fail("%s", d)
	}
	c.result = fmt.Sprintf("%d records, %d differ; %d sessions abandoned in both", len(want), len(diff), len(wantAb))
	return c
}

func clockRecord(m map[string]any) bool {
	t, _ := m["type"].(string)
	return t == "session.abandoned" || t == "session.resumed"
}

// stayedAbandoned: sessions with more abandoned than resumed records.
func stayedAbandoned(recs map[string]map[string]any) map[string]bool {
	n := map[string]int{}
	for _, m := range recs {
		sid, _ := m["session_id"].(string)
		switch m["type"] {
		case "session.abandoned":
			n[sid]++
		case "session.resumed":
			n[sid]--
		}
	}
	out := map[string]bool{}
	for sid, k := range n {
		if k > 0 {
			out[sid] = true
		}
	}
	return out
}
