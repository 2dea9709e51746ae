package ssh

import (
	"bytes"
	"regexp"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Mask types SSH adds to the detectors'.
const (
	MaskTypedSecret = "typed_secret" // keystrokes typed while the terminal does not echo
	MaskEnvSecret   = "env_secret"   // an env request whose name says it holds a secret
)

// MaskChannel is the masking state of one channel, the typed-secret state machine
// (see docs/processors.md, "Typed secrets"): the end of what the server printed
// last, to recognise a prompt for a secret; whether the agent is typing a secret;
// and since when the agent's keystrokes on a terminal went unechoed.
type MaskChannel struct {
	// Tail and In are the last bytes the server printed and the agent typed, as
	// emitted (masked): a secret split across frames is found in them together with
	// the next frame, and a prompt at the end of Tail.
	Tail []byte `json:"tail,omitempty"`
	In   []byte `json:"in,omitempty"`
	// TailOpen and InOpen name the type of a secret masked up to the very end of
	// Tail or In, which the next frame may continue.
	TailOpen string `json:"tail_open,omitempty"`
	InOpen   string `json:"in_open,omitempty"`
	Secret   bool   `json:"secret,omitempty"`
	// TTY: the channel asked for a pty (also known to the stitcher, which may
	// not have read the request yet while frames are held back).
	TTY bool `json:"tty,omitempty"`
	// Unechoed is the time of the first keystroke of the open line that the server
	// has not answered with any output yet; zero when none.
	Unechoed time.Time `json:"unechoed,omitzero"`
}

// WindowBytes bounds Tail and In: a secret split across frames is found when its
// part in the earlier frames is at most this long (a private key block's BEGIN
// line is kept however long its body).
const WindowBytes = 2048

// promptBytes is how much of the end of the output a prompt is looked for in.
const promptBytes = 160

// EchoWait is how long typed keystrokes may go unanswered on a terminal before
// the terminal is taken to be in no-echo mode. A terminal that echoes answers in
// one round trip; an agent typing at a silent prompt waits for nothing.
const EchoWait = 750 * time.Millisecond

// promptRe recognises a prompt for a secret at the end of terminal output: sudo's
// "[sudo] password for bob:", passwd's "New password:", psql's "Password for user
// bob:", ssh-keygen's "Enter new passphrase (empty for no passphrase):", openssl's
// "Enter PEM pass phrase:", "Enter PIN:", "Verification code:", "Token:"…
var promptRe = regexp.MustCompile(`(?i)(?:password|passphrase|pass phrase|passcode|\bpin\b|verification code|one-time code|\botp\b|secret|token|security code|2fa code|authenticator code|api[ _-]?key|access key|secret key)[^\n]{0,80}[:?>]\s*$`)

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
			out, res := ch.input(f, c.terminal(f.Channel), r, counts)
			c.held(f, res)
			return out
		}
		res := stream(r, ch.Tail, f.Payload, ch.TailOpen, counts)
		ch.TailOpen = res.Open
		starBack(ch.Tail, res.Back)
		ch.output(res.Out)
		c.held(f, res)
		return res.Out
	case RequestPTY:
		// Known here, not only once stitched: stitching waits for held frames.
		c.maskChannel(f.Channel).TTY = true
		return f.Payload
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

// stream masks b, the next frame of a stream whose last bytes emitted (or held
// back) were prev, same length; rules that cannot follow a stream mask b alone.
func stream(r protocol.MaskRules, prev, b []byte, open string, counts protocol.Counts) protocol.Streamed {
	if sr, ok := r.(protocol.StreamRules); ok {
		return sr.Stream(prev, b, open, protocol.SameLength, counts)
	}
	return protocol.Streamed{Out: r.Text(b, protocol.SameLength, counts)}
}

// terminal reports whether a channel has a pty, where the remote end echoes what
// the agent types unless it reads a secret.
func (c *Conversation) terminal(id int64) bool {
	ch := c.Channels[id]
	return (ch != nil && ch.Term != "") || (c.Masking[id] != nil && c.Masking[id].TTY)
}

// lineEnd finds the first byte that ends a typed line: Enter (CR or LF), ^C
// (abort) or ^D (end of input); -1 if none.
func lineEnd(p []byte) int { return bytes.IndexAny(p, "\r\n\x03\x04") }

// input masks the agent's keystrokes: a line typed while the terminal does not
// echo, then what the detectors find (a pasted key, a token on a command line).
func (ch *MaskChannel) input(f *schemas.Frame, tty bool, r protocol.MaskRules, counts protocol.Counts) ([]byte, protocol.Streamed) {
	p := f.Payload
	if !ch.Secret && tty && !ch.Unechoed.IsZero() && f.TS.Sub(ch.Unechoed) >= EchoWait {
		// Keystrokes went unanswered: the terminal reads a secret without echo.
		ch.Secret = true
	}
	out := p
	if ch.Secret {
		out = append([]byte(nil), p...)
		end := lineEnd(out)
		if end < 0 {
			end = len(out)
		} else {
			ch.Secret = false
		}
		if end > 0 {
			star(out[:end])
			counts.Add(MaskTypedSecret, 1)
		}
	}
	ch.noteTyping(p, f.TS, tty)
	res := stream(r, ch.In, out, ch.InOpen, counts)
	ch.InOpen = res.Open
	starBack(ch.In, res.Back)
	ch.In = window(ch.In, res.Out)
	return res.Out, res
}

// noteTyping starts the echo clock when the frame leaves a line open with
// keystrokes the server has yet to echo, and stops it when a line ends.
func (ch *MaskChannel) noteTyping(p []byte, ts time.Time, tty bool) {
	if !tty {
		return
	}
	rest := p
	for {
		end := lineEnd(rest)
		if end < 0 {
			break
		}
		ch.Unechoed, rest = time.Time{}, rest[end+1:]
	}
	if ch.Unechoed.IsZero() && printable(rest) {
		ch.Unechoed = ts
	}
}

// printable reports whether p holds a key a terminal would echo.
func printable(p []byte) bool {
	for _, c := range p {
		if c >= 0x20 && c != 0x7f {
			return true
		}
	}
	return false
}

// output notes what the server printed (already masked).
func (ch *MaskChannel) output(out []byte) {
	if len(out) == 0 {
		return
	}
	ch.Unechoed = time.Time{}
	ch.Tail = window(ch.Tail, out)
	end := StripEscapes(ch.Tail[max(len(ch.Tail)-promptBytes, 0):])
	ch.Secret = endsLikePrompt(end) && promptRe.Match(end)
}

// endsLikePrompt is promptRe's cheap precondition: the text ends in ':', '?' or
// '>' and white space. The expression alone, tried from every position of the
// output's end, cost more than all the detectors on terminal output.
func endsLikePrompt(b []byte) bool {
	b = bytes.TrimRight(b, " \t\r\n\v\f")
	return len(b) > 0 && (b[len(b)-1] == ':' || b[len(b)-1] == '?' || b[len(b)-1] == '>')
}

var (
	keyBegin = []byte("-----BEGIN ")
	keyEnd   = []byte("-----END ")
)

// window appends b to w and keeps the last WindowBytes, plus the BEGIN line of a
// private key block still open before them, so that the rest of the block is
// masked however many frames it spans.
func window(w, b []byte) []byte {
	w = append(w, b...)
	if len(w) <= WindowBytes {
		return w
	}
	cut := len(w) - WindowBytes
	var keep []byte
	if i := bytes.LastIndex(w[:cut], keyBegin); i >= 0 && !bytes.Contains(w[i:], keyEnd) {
		line := w[i:]
		if n := bytes.IndexByte(line, '\n'); n >= 0 {
			line = line[:n+1]
		}
		switch {
		case !bytes.Contains(line, []byte("PRIVATE KEY")):
		case i+len(line) <= cut:
			keep = line
		default:
			cut = i // the line straddles the cut: keep all of it
		}
	}
	return append(append(make([]byte, 0, len(keep)+len(w)-cut), keep...), w[cut:]...)
}

// assumeSecret masks the next line as a secret and forgets the output seen.
func (ch *MaskChannel) assumeSecret() { *ch = MaskChannel{Secret: true, TTY: ch.TTY} }

// star overwrites every byte with '*' except line breaks, so a terminal's layout holds.
func star(b []byte) {
	for i, c := range b {
		if c != '\n' && c != '\r' {
			b[i] = '*'
		}
	}
}
