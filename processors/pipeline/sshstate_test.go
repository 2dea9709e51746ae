package pipeline

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// savedSSH is an SSH session saved by the processor part way: the frames, the
// index of the first frame after the save, and the saved state.
type savedSSH struct {
	Frames []schemas.Frame `json:"frames"`
	Cut    int             `json:"cut"`
	State  json.RawMessage `json:"state"`
}

// sshStateV1 was saved by the processor of session state format 1, before SSH
// masking and stitching became one conversation.
const sshStateV1 = "testdata/ssh-state-v1.json"

// TestRestoresSSHStateSavedBeforeConversations: a session saved with the stitcher
// under "ssh" and the masking state under "mask" (in the middle of a password typed
// at a sudo prompt) goes on as if never stopped: the rest of the password is masked
// and the commands are those of an uninterrupted run.
func TestRestoresSSHStateSavedBeforeConversations(t *testing.T) {
	b, err := os.ReadFile(sshStateV1)
	if err != nil {
		t.Fatal(err)
	}
	var saved savedSSH
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	id := saved.Frames[0].SessionID
	p := newProcessor(t)
	if err := p.Restore(id, saved.State); err != nil {
		t.Fatal(err)
	}
	got := processAll(p, saved.Frames[saved.Cut:])
	whole := processAll(newProcessor(t), saved.Frames)
	for _, f := range got.Frames {
		for _, secret := range []string{"unter", "2\r"} {
			if bytes.Contains(f.Payload, []byte(secret)) {
				t.Errorf("seq %d leaks %q: %q", f.Seq, secret, f.Payload)
			}
		}
	}
	if len(got.Commands) == 0 || got.Commands[0].Text != "*******" || got.Commands[0].Masks[mask.TypedSecret] == 0 {
		t.Errorf("password line after restore: %+v", got.Commands)
	}
	// The saved line counted its first keystroke under the type's former name.
	for _, c := range [][]schemas.Command{got.Commands, whole.Commands} {
		for i := range c {
			c[i].Masks = nil
		}
	}
	if a, b := marshalOutput(t, Output{Commands: got.Commands}), marshalOutput(t, Output{Commands: whole.Commands[1:]}); a != b {
		t.Errorf("commands after restore\n%s\nwant\n%s", a, b)
	}
}

// stitchPanics is SSH whose stitching fails on one frame.
type stitchPanics struct {
	sshproto.Protocol
	seq int64
}

func (p stitchPanics) NewConversation() protocol.Conversation {
	return &panicConv{Conversation: &sshproto.Conversation{}, seq: p.seq}
}

type panicConv struct {
	*sshproto.Conversation
	seq int64
}

func (c *panicConv) Stitch(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	if f.Seq == c.seq {
		panic("injected stitching failure")
	}
	return c.Conversation.Stitch(f, lim)
}

// A conversation whose stitching failed is replaced, but what its masking knew is
// not lost with it: the frame it failed on may have been the password prompt, so
// the line typed next is still masked.
func TestStitchFailureKeepsTypedSecretsMasked(t *testing.T) {
	s := sshSession(alice, t0)
	var prompt int64 = -1
	for _, f := range s.Frames {
		if bytes.Contains(f.Payload, []byte("[sudo] password")) {
			prompt = f.Seq
		}
	}
	t.Cleanup(protocol.Swap(stitchPanics{seq: prompt}))
	out := processAll(newProcessor(t), s.Frames)
	for _, f := range out.Frames {
		if bytes.Contains(f.Payload, []byte("unter")) {
			t.Errorf("seq %d leaks the password: %q", f.Seq, f.Payload)
		}
	}
	for _, c := range out.Commands {
		if strings.Contains(c.Text, "unter") {
			t.Errorf("command %q leaks the password", c.Text)
		}
	}
}
