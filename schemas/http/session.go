package http

import (
	"encoding/json"
	"fmt"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// NewConversation implements protocol.Conversations: HTTP masks and
// stitches a session on one state.
func (Protocol) NewConversation() protocol.Conversation { return &SessionConversation{} }

// SessionConversation is one HTTP session's state in the processor: what
// masking remembers of open bodies, and the exchanges being stitched.
type SessionConversation struct {
	Masking  MaskState `json:"mask"`
	Stitcher Stitcher  `json:"stitch"`
}

// Mask implements protocol.Conversation.
func (c *SessionConversation) Mask(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	n := len(counts)
	var total int64
	for _, v := range counts {
		total += v
	}
	out := c.Masking.MaskFrame(f, MaskRules{
		Header: r.Header,
		Field:  r.JSONField,
		Text:   func(b []byte) []byte { return r.Text(b, protocol.Token, counts) },
		Bytes:  func(b []byte) []byte { return r.Text(b, protocol.SameLength, counts) },
		Count:  func(typ string, n int64) { counts.Add(typ, n) },
	})
	var after int64
	for _, v := range counts {
		after += v
	}
	if len(counts) == n && after == total {
		return f.Payload // nothing masked: the payload stays as recorded
	}
	return out
}

// Withheld implements protocol.Conversation: a withheld frame's body is
// gone from storage, so its exchange is stitched without it.
func (c *SessionConversation) Withheld(f *schemas.Frame) {
	if f.Kind == KindRequest || f.Kind == KindResponse {
		c.Masking.remember(f)
	}
}

// Stitch implements protocol.Conversation.
func (c *SessionConversation) Stitch(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	return c.Stitcher.Frame(f, lim)
}

// Flush implements protocol.Conversation.
func (c *SessionConversation) Flush(f *schemas.Frame, why string) []schemas.Command {
	return c.Stitcher.Flush(f, why)
}

// RestoreConversation implements protocol.ConversationRestorer: a session saved before
// HTTP was a conversation kept its mask state under the mask state's "http"
// key and its stitcher under "http".
func (Protocol) RestoreConversation(saved map[string]json.RawMessage) (protocol.Conversation, error) {
	c := &SessionConversation{}
	if raw, ok := saved["http"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &c.Stitcher); err != nil {
			return nil, fmt.Errorf("http stitcher state: %w", err)
		}
	}
	var m struct {
		HTTP *MaskState `json:"http"`
	}
	if raw, ok := saved["mask"]; ok {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("http mask state: %w", err)
		}
	}
	if m.HTTP != nil {
		c.Masking = *m.HTTP
	}
	return c, nil
}
