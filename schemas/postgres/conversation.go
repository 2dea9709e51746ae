package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Conversation is one Postgres session's state in the processors: the stitcher's
// view of the conversation (prepared statements, portals, the messages awaiting an
// answer, the columns of the rows now arriving) and the masker's position in a
// fragmented message. Masking reads what stitching learnt: a DataRow is masked by the
// columns its RowDescription named, a Bind by the columns its statement binds.
//
// It is saved with encoding/json: the stitcher's fields inline (as sessions saved them
// under "pg" before masking moved here, but for its partial message, now
// "stitch_frag"), the walk under "walk" (as the masker saved it).
type Conversation struct {
	Stitcher
	Walk *walk `json:"walk,omitempty"`
	// Copy is the COPY ... FROM STDIN whose rows are arriving, when it names ruled
	// columns: where the masker is in its data.
	Copy *copyState `json:"copy,omitempty"`
	// Frag is where the detectors are in the byte stream of a fragmented message
	// that is not walked field by field (see fragmentText).
	Frag *fragStream `json:"frag,omitempty"`
	// Lost is the type byte of a whole message whose payload was withheld, for Stitch
	// to read it as an empty message of its type.
	Lost byte `json:"lost,omitempty"`
}

// NewConversation implements protocol.Conversations.
func (Protocol) NewConversation() protocol.Conversation { return &Conversation{} }

// Stitch implements protocol.Conversation.
func (c *Conversation) Stitch(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	if lost := c.Lost; lost != 0 {
		c.Lost = 0
		if f.Fragment == 0 && f.Final && len(f.Payload) == 0 {
			w := *f
			w.Payload = []byte{lost, 0, 0, 0, 4}
			return c.Frame(&w, lim)
		}
	}
	return c.Frame(f, lim)
}

// Withheld implements protocol.Conversation. A whole message is read by Stitch as an
// empty message of its type, so that answers keep pairing with their requests; the
// rest of a fragmented message is masked whole (its field walk is lost).
func (c *Conversation) Withheld(f *schemas.Frame) {
	c.Walk = nil
	if !f.Final {
		c.Walk = &walk{Kind: f.Kind, Blind: true}
	}
	if f.Fragment == 0 && f.Final && len(f.Payload) > 0 {
		c.Lost = f.Payload[0]
	}
}

// RestoreConversation implements protocol.ConversationRestorer: sessions saved
// before Postgres had a conversation (session state formats 1 and 2) keep the
// stitcher under "pg" and the masker's walk under "mask" → "walk". The conversation
// keeps their field names but one: the stitcher's partial message, "frag" under
// "pg", is read through legacyStitcher.
func (Protocol) RestoreConversation(saved map[string]json.RawMessage) (protocol.Conversation, error) {
	c := &Conversation{}
	if raw, ok := saved["pg"]; ok && string(raw) != "null" {
		var st legacyStitcher
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("postgres pg state: %w", err)
		}
		c.Stitcher = st.Stitcher
		c.Stitcher.Frag = st.Frag
	}
	if raw, ok := saved["mask"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, c); err != nil {
			return nil, fmt.Errorf("postgres mask state: %w", err)
		}
	}
	return c, nil
}

// legacyStitcher is the stitcher as sessions saved it under "pg", alone, where
// its partial message was "frag".
type legacyStitcher struct {
	Stitcher
	Frag *pgFrag `json:"frag,omitempty"`
}
