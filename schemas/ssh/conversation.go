package ssh

import (
	"encoding/json"
	"fmt"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Conversation is one SSH session as the processors carry it: the stitcher's
// channels and, per channel, what masking must remember between frames (whether the
// agent is typing a secret, the end of what the server printed last).
type Conversation struct {
	Stitcher
	Masking map[int64]*MaskChannel `json:"masking,omitempty"`

	// hold is what masking the current frame found for the hold-back (see Hold);
	// it lives from Mask to Hold on the same frame and is never saved.
	hold    protocol.Hold
	holdSeq int64
}

// NewConversation implements protocol.Conversations.
func (Protocol) NewConversation() protocol.Conversation { return &Conversation{} }

// Stitch implements protocol.Conversation.
func (c *Conversation) Stitch(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	return c.Frame(f, lim)
}

// Withheld implements protocol.Conversation: the withheld frame may have been a
// prompt for a secret, so the next line typed on its channel is masked as one.
func (c *Conversation) Withheld(f *schemas.Frame) {
	c.maskChannel(f.Channel).assumeSecret()
}

func (c *Conversation) maskChannel(id int64) *MaskChannel {
	if c.Masking == nil {
		c.Masking = map[int64]*MaskChannel{}
	}
	ch := c.Masking[id]
	if ch == nil {
		ch = &MaskChannel{}
		c.Masking[id] = ch
	}
	return ch
}

// RestoreConversation implements protocol.ConversationRestorer: sessions saved
// before SSH had a conversation keep the stitcher under "ssh" and the masking state
// per channel under "mask" → "ssh".
func (Protocol) RestoreConversation(saved map[string]json.RawMessage) (protocol.Conversation, error) {
	c := &Conversation{}
	if raw, ok := saved["ssh"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &c.Stitcher); err != nil {
			return nil, fmt.Errorf("ssh stitcher state: %w", err)
		}
	}
	if raw, ok := saved["mask"]; ok && string(raw) != "null" {
		var m struct {
			SSH map[int64]*MaskChannel `json:"ssh"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("ssh masking state: %w", err)
		}
		c.Masking = m.SSH
	}
	return c, nil
}
