package mask

import (
	"bytes"
	"regexp"
	"strings"

	sshproto "github.com/tapline/tapline/schemas/ssh"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
)

// sshChannel is the masking state of one SSH channel: the tail of what the server
// printed last, to recognise a password prompt, and whether the agent is typing at one.
type sshChannel struct {
	Tail   []byte `json:"tail,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

const tailBytes = 160

// promptRe recognises a prompt for a secret at the end of terminal output.
var promptRe = regexp.MustCompile(`(?i)(?:password|passphrase|passcode|\bpin\b|verification code|one-time code|otp|secret|token)[^\n]{0,80}[:?]\s*$`)

var envSecretRe = regexp.MustCompile(`(?i)pass|secret|token|credential|private|api_?key|auth`)

// ssh masks one SSH frame. Channel data keeps its length (a terminal's layout depends
// on it): detected secrets become '*', and so do keystrokes typed after a password
// prompt until the line ends. Requests with string payloads (exec, env) are rewritten
// with correct lengths.
func (t *targetRules) ssh(f *schemas.Frame, st *State, counts Counts) []byte {
	switch f.Kind {
	case sshproto.ChannelData, sshproto.ChannelExtData:
		ch := st.sshChannel(f.Channel)
		if f.Direction == schemas.Client {
			return t.sshInput(f.Payload, ch, counts)
		}
		out := t.text(f.Payload, sameLength, counts)
		ch.observeOutput(out)
		return out
	case sshproto.RequestExec:
		var req struct{ Command string }
		if ssh.Unmarshal(f.Payload, &req) != nil {
			return t.sshOpaque(f.Payload, counts)
		}
		c := Counts{}
		req.Command = string(t.text([]byte(req.Command), token, c))
		if len(c) == 0 {
			return f.Payload
		}
		counts.merge(c)
		return ssh.Marshal(&req)
	case sshproto.RequestEnv:
		var req struct{ Name, Value string }
		if ssh.Unmarshal(f.Payload, &req) != nil {
			return t.sshOpaque(f.Payload, counts)
		}
		c := Counts{}
		if envSecretRe.MatchString(req.Name) && req.Value != "" {
			c.add(EnvSecret, 1)
			req.Value = Token(EnvSecret)
		} else {
			req.Value = string(t.text([]byte(req.Value), token, c))
		}
		if len(c) == 0 {
			return f.Payload
		}
		counts.merge(c)
		return ssh.Marshal(&req)
	case sshproto.ChannelOpen:
		// Channel types and forwarding addresses carry no secrets.
		return f.Payload
	}
	for _, prefix := range []string{sshproto.RequestPrefix, sshproto.ReplyPrefix, sshproto.GlobalPrefix, sshproto.ChannelPrefix} {
		if strings.HasPrefix(f.Kind, prefix) {
			// Other requests (pty-req, window-change, exit-status…), replies, global
			// requests (host keys, forwarding addresses), eof and close carry no free text.
			return f.Payload
		}
	}
	return t.sshOpaque(f.Payload, counts)
}

// sshOpaque masks a payload it does not parse without changing its length.
func (t *targetRules) sshOpaque(p []byte, counts Counts) []byte {
	return t.text(p, sameLength, counts)
}

// sshInput masks the agent's keystrokes: the part of a line typed at a password
// prompt, then what the detectors find (a pasted key, a token on a command line).
func (t *targetRules) sshInput(p []byte, ch *sshChannel, counts Counts) []byte {
	out := p
	if ch.Secret {
		out = append([]byte(nil), p...)
		end := bytes.IndexAny(out, "\r\n")
		if end < 0 {
			end = len(out)
		} else {
			ch.Secret = false
		}
		if end > 0 {
			star(out[:end])
			counts.add(SecretInput, 1)
		}
	}
	return t.text(out, sameLength, counts)
}

func (ch *sshChannel) observeOutput(out []byte) {
	if len(out) == 0 {
		return
	}
	ch.Tail = append(ch.Tail, out...)
	if len(ch.Tail) > tailBytes {
		ch.Tail = append([]byte(nil), ch.Tail[len(ch.Tail)-tailBytes:]...)
	}
	ch.Secret = promptRe.Match(sshproto.StripEscapes(ch.Tail))
}
