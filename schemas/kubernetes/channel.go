package kubernetes

import (
	"errors"
	"fmt"
)

// WebSocket subprotocols of exec, attach and port-forward.
const (
	ChannelV4     = "v4.channel.k8s.io"
	ChannelV5     = "v5.channel.k8s.io"
	PortForwardV1 = "v4.portforward.k8s.io"
	PortForwardV2 = "portforward.k8s.io"
)

// Channel numbers of remotecommand over WebSocket (the index of the stream).
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4
	chanClose  = 255 // v5: payload is the number of the channel being closed
)

// Message is one decoded channel message.
type Message struct {
	Kind    Kind
	Channel byte // the channel number on the wire (for port-forward: 2·port index + 0/1)
	Data    []byte
}

// ChannelError is the channel of an exec's final Status.
const ChannelError = chanError

// ErrEmpty is a WebSocket message without its channel byte.
var ErrEmpty = errors.New("kubernetes: channel message has no channel byte")

// DecodeChannel decodes one binary WebSocket message of an exec or attach
// (subprotocol v4/v5.channel.k8s.io) or of a port-forward (portforward.k8s.io,
// where even channels carry data and odd ones errors). Data aliases msg.
func DecodeChannel(subprotocol string, msg []byte) (Message, error) {
	if len(msg) == 0 {
		return Message{}, ErrEmpty
	}
	ch, data := msg[0], msg[1:]
	if subprotocol == PortForwardV1 || subprotocol == PortForwardV2 {
		if ch%2 == 1 {
			return Message{Kind: KindPortError, Channel: ch, Data: data}, nil
		}
		return Message{Kind: KindPortData, Channel: ch, Data: data}, nil
	}
	switch {
	case ch == chanStdin:
		return Message{Kind: KindStdin, Channel: ch, Data: data}, nil
	case ch == chanStdout:
		return Message{Kind: KindStdout, Channel: ch, Data: data}, nil
	case ch == chanStderr:
		return Message{Kind: KindStderr, Channel: ch, Data: data}, nil
	case ch == chanError:
		return Message{Kind: KindStatus, Channel: ch, Data: data}, nil
	case ch == chanResize:
		return Message{Kind: KindResize, Channel: ch, Data: data}, nil
	case ch == chanClose && subprotocol == ChannelV5:
		return Message{Kind: KindClose, Channel: ch, Data: data}, nil
	}
	return Message{}, fmt.Errorf("kubernetes: unknown channel %d on %q", ch, subprotocol)
}

// SPDY stream types (the streamType header of each SYN_STREAM).
const (
	streamStdin  = "stdin"
	streamStdout = "stdout"
	streamStderr = "stderr"
	streamError  = "error"
	streamResize = "resize"
	streamData   = "data" // port-forward
)

// KindOfStreamType maps a SPDY stream's streamType to a frame kind. portForward
// tells the error stream of a port-forward from the status stream of an exec.
func KindOfStreamType(t string, portForward bool) (Kind, bool) {
	switch t {
	case streamStdin:
		return KindStdin, true
	case streamStdout:
		return KindStdout, true
	case streamStderr:
		return KindStderr, true
	case streamResize:
		return KindResize, true
	case streamData:
		return KindPortData, true
	case streamError:
		if portForward {
			return KindPortError, true
		}
		return KindStatus, true
	}
	return "", false
}
