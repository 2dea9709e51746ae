package ssh

import (
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

func init() { protocol.Register(Protocol{}) }

// Protocol is SSH in the protocol registry.
type Protocol struct{}

// Name implements protocol.Protocol.
func (Protocol) Name() schemas.Protocol { return schemas.SSH }

// Kinds implements protocol.Protocol.
func (Protocol) Kinds() []string {
	return []string{ChannelOpen, ChannelOpenFailure, ChannelData, ChannelExtData, ChannelEOF, ChannelClose,
		RequestPrefix, GlobalPrefix, ReplyPrefix}
}

// OCSFClass implements protocol.Audited.
func (Protocol) OCSFClass() string { return "ssh" }
