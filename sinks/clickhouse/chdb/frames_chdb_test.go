//go:build chdb

package chdb

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// On the engine's own bytes, a frames read decodes to the same frames directly
// as through DecodeRowBinary and ScanFrame.
func TestQueryFramesMatchesGeneric(t *testing.T) {
	ctx := context.Background()
	c, err := Dial(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := clickhouse.NewStore(c, clickhouse.Config{})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fs := sampleFrames()
	if err := s.Insert(ctx, &clickhouse.Batch{Frames: fs}); err != nil {
		t.Fatal(err)
	}
	q := "SELECT " + strings.Join(clickhouse.FrameColumns(), ", ") +
		" FROM frames FINAL WHERE session_id = {sid:String} ORDER BY seq"
	p := clickhouse.Params{"sid": fs[0].SessionID}
	rs, err := c.Query(ctx, q, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wantFrames []schemas.Frame
	for rs.Next() {
		f, err := clickhouse.ScanFrame(rs, false)
		if err != nil {
			t.Fatal(err)
		}
		wantFrames = append(wantFrames, f)
	}
	got, err := c.(clickhouse.FramesConn).QueryFrames(ctx, q, p, len(fs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(fs) || !reflect.DeepEqual(got, wantFrames) {
		t.Fatalf("direct decode differs from the generic one:\n got %+v\nwant %+v", got, wantFrames)
	}
	for i := range fs {
		if !reflect.DeepEqual(got[i].Payload, fs[i].Payload) || !reflect.DeepEqual(got[i].Masks, fs[i].Masks) ||
			!reflect.DeepEqual(got[i].End, fs[i].End) || !reflect.DeepEqual(got[i].ProcessorSig, fs[i].ProcessorSig) {
			t.Errorf("frame %d did not come back as written", i)
		}
	}
}
