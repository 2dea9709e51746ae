package pipeline

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/tapline/tapline/schemas"
)

// savedSSH is an SSH session saved by the processor part way: the frames, the
// index of the first frame after the save, and the saved state.
type savedSSH struct {
	Frames []schemas.Frame  `json:"frames"`
	Cut    int              `json:"cut"`
	State  json.RawMessage `json:"state"`
}

const sshStateV1 = "testdata/ssh-state-v1.json"

// TestWriteSSHStateV1 writes sshStateV1 with the processor of this build; it ran
// once, before SSH masking moved into its conversation.
func TestWriteSSHStateV1(t *testing.T) {
	if os.Getenv("TAPLINE_WRITE_SSH_STATE") == "" {
		t.Skip("writes testdata only on request")
	}
	s := sshSession(alice, t0)
	cut := 0
	for i, f := range s.Frames {
		if string(f.Payload) == "h" {
			cut = i + 1
		}
	}
	p := newProcessor(t)
	var out Output
	for _, f := range s.Frames[:cut] {
		if err := p.Frame(f, &out); err != nil {
			t.Fatal(err)
		}
	}
	changes, err := p.TakeDirty()
	if err != nil || len(changes) != 1 {
		t.Fatal(changes, err)
	}
	b, err := json.MarshalIndent(savedSSH{Frames: s.Frames, Cut: cut, State: changes[0].Value}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sshStateV1, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
