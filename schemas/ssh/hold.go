package ssh

import (
	"strconv"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// held notes what masking f as part of its channel's stream found, for Hold.
func (c *Conversation) held(f *schemas.Frame, res protocol.Streamed) {
	c.hold = protocol.Hold{Stream: streamKey(f.Channel, f.Direction), Back: res.Back, Pending: res.Pending}
	c.holdSeq = f.Seq + 1 // zero means "none"
}

// Hold implements protocol.Holding: channel data and extended data continue the
// channel's stream in their direction (the same window the detectors read); eof
// ends its sender's stream, close both, and close forgets the channel's masking
// state (a later channel may reuse its number). It is called for every frame, in
// order, so that the state follows the frames as they arrive, not as they are
// released.
func (c *Conversation) Hold(f *schemas.Frame) protocol.Hold {
	h := protocol.Hold{}
	if c.holdSeq == f.Seq+1 {
		h = c.hold
	}
	c.hold, c.holdSeq = protocol.Hold{}, 0
	switch f.Kind {
	case ChannelEOF:
		h.Ended = []string{streamKey(f.Channel, f.Direction)}
	case ChannelClose:
		h.Ended = []string{streamKey(f.Channel, schemas.Client), streamKey(f.Channel, schemas.Server)}
		delete(c.Masking, f.Channel)
	}
	return h
}

func streamKey(ch int64, d schemas.Direction) string {
	return strconv.FormatInt(ch, 10) + "/" + string(d)
}

// starBack masks, in a window, the secrets found in it when a later frame
// completed them (their part in frames still held back).
func starBack(w []byte, back []protocol.Span) {
	for _, b := range back {
		star(w[max(len(w)-b.From, 0):max(len(w)-b.To, 0)])
	}
}

var _ protocol.Holding = (*Conversation)(nil)
