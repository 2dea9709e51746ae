package pipeline

import (
	"bytes"
	"testing"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// echoProto is a protocol that masks and stitches in its own package
// (protocol.Conversations), as a new protocol registers: each client frame is one
// command, answered by the next server frame.
type echoProto struct{}

// echoName is a protocol value the frame schema knows; the test stands echoProto in
// for whatever is registered under it.
const echoName = schemas.Kubernetes

func (echoProto) Name() schemas.Protocol                 { return echoName }
func (echoProto) Kinds() []string                        { return []string{"echo.line"} }
func (echoProto) NewConversation() protocol.Conversation { return &echoConv{} }

type echoConv struct {
	Open *schemas.Command `json:"open,omitempty"`
	Lost int              `json:"lost,omitempty"`
}

func (c *echoConv) Mask(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	return r.Text(f.Payload, protocol.Token, counts)
}

func (c *echoConv) Stitch(f *schemas.Frame, _ protocol.Limits) []schemas.Command {
	if f.Direction == schemas.Client {
		c.Open = protocol.NewCommand(f, "line", string(f.Payload), f.Masks)
		return nil
	}
	if c.Open == nil {
		return nil
	}
	protocol.Finish(c.Open, f, protocol.StatusOK)
	done := *c.Open
	c.Open = nil
	return []schemas.Command{done}
}

func (c *echoConv) Withheld(*schemas.Frame) { c.Lost++ }

func (c *echoConv) Flush(*schemas.Frame, string) []schemas.Command {
	if c.Open == nil {
		return nil
	}
	return []schemas.Command{*c.Open}
}

// TestConversationProtocol: a protocol registered with its own conversation is
// masked and stitched by it, and its state survives the processor's save and restore.
func TestConversationProtocol(t *testing.T) {
	t.Cleanup(protocol.Swap(echoProto{}))
	s := sessiontest.Start(echoName, schemas.SessionStart{Subject: "alice", Target: "echo"}, sessiontest.NewKey(1), t0)
	s.Add(schemas.Client, "echo.line", 0, []byte("mail bob@example.com"))
	s.Add(schemas.Server, "echo.line", 0, []byte("sent"))
	s.Add(schemas.Client, "echo.line", 0, []byte("never answered"))
	s.End("client closed")

	var out Output
	saved := map[string][]byte{}
	for _, f := range s.Frames {
		p := newProcessor(t)
		for id, v := range saved {
			if err := p.Restore(id, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Frame(f, &out); err != nil {
			t.Fatal(err)
		}
		changes, err := p.TakeDirty()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			saved[c.SessionID] = c.Value
		}
	}
	if bytes.Contains(out.Frames[1].Payload, []byte("bob@example.com")) || out.Frames[1].Masks["email"] != 1 {
		t.Errorf("frame not masked by its conversation: %q %v", out.Frames[1].Payload, out.Frames[1].Masks)
	}
	if len(out.Commands) != 2 {
		t.Fatalf("commands %+v", out.Commands)
	}
	if c := out.Commands[0]; c.Text != "mail [masked:email]" || c.Status != protocol.StatusOK || c.CommandSeq != 1 || c.SeqEnd != 2 {
		t.Errorf("first command %+v", c)
	}
	if c := out.Commands[1]; c.Text != "never answered" || c.Status != protocol.StatusIncomplete {
		t.Errorf("flushed command %+v", c)
	}
}
