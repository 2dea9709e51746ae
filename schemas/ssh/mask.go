package ssh

import (
	"bytes"
	"regexp"
	"strings"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Mask types SSH adds to the detectors'.
const (
	MaskSecretInput = "secret_input" // keystrokes typed at a prompt for a secret
	MaskEnvSecret   = "env_secret"   // an env request whose name says it holds a secret
)

// MaskChannel is the masking state of one channel: the end of what the server
// printed last, to recognise a prompt for a secret, and whether the agent is typing
// at one.
type MaskChannel struct {
	Tail   []byte `json:"tail,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

const tailBytes = 160

// promptRe recognises a prompt for a secret at the end of terminal output.
var promptRe = regexp.MustCompile(`(?i)(?:password|passphrase|passcode|\bpin\b|verification code|one-time code|otp|secret|token)[^\n]{0,80}[:?]\s*$`)

var envSecretRe = regexp.MustCompile(`(?i)pass|secret|token|credential|private|api_?key|auth`)

// Mask implements protocol.Conversation. Channel data keeps its length (a
// terminal's layout depends on it): detected secrets become '*', and so do
// keystrokes typed at a prompt for a secret until the line ends. Requests with
// string payloads (exec, env) are rewritten with correct lengths.
func (c *Conversation) Mask(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	switch f.Kind {
	case ChannelData, ChannelExtData:
		ch := c.maskChannel(f.Channel)
		if f.Direction == schemas.Client {
			return ch.input(f.Payload, r, counts)
		}
		out := r.Text(f.Payload, protocol.SameLength, counts)
		ch.output(out)
		return out
	case RequestExec:
		return maskExec(f.Payload, r, counts)
	case RequestEnv:
		return maskEnv(f.Payload, r, counts)
	case ChannelOpen:
		// Channel types and forwarding addresses carry no secrets.
		return f.Payload
	}
	for _, prefix := range []string{RequestPrefix, ReplyPrefix, GlobalPrefix, ChannelPrefix} {
		if strings.HasPrefix(f.Kind, prefix) {
			// Other requests (pty-req, window-change, exit-status…), replies, global
			// requests (host keys, forwarding addresses), eof and close carry no free text.
			return f.Payload
		}
	}
	// A kind this build does not parse keeps its length.
	return r.Text(f.Payload, protocol.SameLength, counts)
}

func maskExec(p []byte, r protocol.MaskRules, counts protocol.Counts) []byte {
	var req struct{ Command string }
	if xssh.Unmarshal(p, &req) != nil {
		return r.Text(p, protocol.SameLength, counts)
	}
	c := protocol.Counts{}
	req.Command = string(r.Text([]byte(req.Command), protocol.Token, c))
	if len(c) == 0 {
		return p
	}
	merge(counts, c)
	return xssh.Marshal(&req)
}

func maskEnv(p []byte, r protocol.MaskRules, counts protocol.Counts) []byte {
	var req struct{ Name, Value string }
	if xssh.Unmarshal(p, &req) != nil {
		return r.Text(p, protocol.SameLength, counts)
	}
	c := protocol.Counts{}
	if envSecretRe.MatchString(req.Name) && req.Value != "" {
		c.Add(MaskEnvSecret, 1)
		req.Value = "[masked:" + MaskEnvSecret + "]"
	} else {
		req.Value = string(r.Text([]byte(req.Value), protocol.Token, c))
	}
	if len(c) == 0 {
		return p
	}
	merge(counts, c)
	return xssh.Marshal(&req)
}

func merge(dst, src protocol.Counts) {
	for k, v := range src {
		dst.Add(k, v)
	}
}

// input masks the agent's keystrokes: the part of a line typed at a prompt for a
// secret, then what the detectors find (a pasted key, a token on a command line).
func (ch *MaskChannel) input(p []byte, r protocol.MaskRules, counts protocol.Counts) []byte {
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
			counts.Add(MaskSecretInput, 1)
		}
	}
	return r.Text(out, protocol.SameLength, counts)
}

// output notes what the server printed (already masked).
func (ch *MaskChannel) output(out []byte) {
	if len(out) == 0 {
		return
	}
	ch.Tail = append(ch.Tail, out...)
	if len(ch.Tail) > tailBytes {
		ch.Tail = append([]byte(nil), ch.Tail[len(ch.Tail)-tailBytes:]...)
	}
	ch.Secret = promptRe.Match(StripEscapes(ch.Tail))
}

// assumeSecret masks the next line as a secret and forgets the output seen.
func (ch *MaskChannel) assumeSecret() { *ch = MaskChannel{Secret: true} }

// star overwrites every byte with '*' except line breaks, so a terminal's layout holds.
func star(b []byte) {
	for i, c := range b {
		if c != '\n' && c != '\r' {
			b[i] = '*'
		}
	}
}
