package pipeline

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// TestPostgresStateSavedBeforeConversation: a Postgres session saved while its
// stitcher lived under "pg" and its masker's walk under "mask" (testdata written by
// that build, in the middle of a fragmented DataRow whose api_key value is ruled)
// carries on in the conversation: the rest of the row is masked, the prepared
// statement still maps its parameter to api_key, and frames and commands come out as
// that build produced them.
func TestPostgresStateSavedBeforeConversation(t *testing.T) {
	frames, err := sessiontest.Load("testdata/legacy-pg-session.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	want, err := sessiontest.Load("testdata/legacy-pg-masked.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile("testdata/legacy-pg-state.json")
	if err != nil {
		t.Fatal(err)
	}
	var wantCmds []schemas.Command
	if b, err := os.ReadFile("testdata/legacy-pg-commands.json"); err != nil || json.Unmarshal(b, &wantCmds) != nil {
		t.Fatalf("commands: %v", err)
	}
	const savedAfter = 8
	m, err := mask.New(mask.Config{Targets: map[string]mask.Rules{"db": {Columns: []string{"api_key"}}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Masker: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Restore(frames[0].SessionID, state); err != nil {
		t.Fatal(err)
	}
	c, ok := p.sessions[frames[0].SessionID].Conv.(*pgwire.Conversation)
	if !ok || c.Walk == nil || c.Stmts["s"] == nil || len(c.Queue) != 1 {
		t.Fatalf("state not restored into the conversation: %+v", p.sessions[frames[0].SessionID].Conv)
	}
	var out Output
	for _, f := range frames[savedAfter+1:] {
		if err := p.Frame(f, &out); err != nil {
			t.Fatal(err)
		}
	}
	if len(out.Frames) != len(want)-savedAfter-1 {
		t.Fatalf("%d frames, want %d", len(out.Frames), len(want)-savedAfter-1)
	}
	for i, f := range out.Frames {
		w := want[savedAfter+1+i]
		if !bytes.Equal(f.Payload, w.Payload) || !equalMasks(f.Masks, w.Masks) {
			t.Errorf("frame %d (%s): %q %v, want %q %v", f.Seq, f.Kind, f.Payload, f.Masks, w.Payload, w.Masks)
		}
		if bytes.Contains(f.Payload, []byte("sk-live-")) {
			t.Errorf("frame %d (%s) holds the ruled value", f.Seq, f.Kind)
		}
	}
	got, _ := json.Marshal(out.Commands)
	exp, _ := json.Marshal(wantCmds)
	if !bytes.Equal(got, exp) || len(wantCmds) != 2 {
		t.Errorf("commands\n%s\nwant\n%s", got, exp)
	}
	if len(p.sessions[frames[0].SessionID].Summary.Integrity) != 0 {
		t.Errorf("integrity: %v", p.sessions[frames[0].SessionID].Summary.Integrity)
	}
}

func equalMasks(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
