package kubernetes

import (
	"encoding/json"
	"strconv"

	"github.com/tapline/tapline/schemas"
	httpproto "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/protocol"
)

// Command kinds.
const (
	CommandCall   = "k8s.call"   // one API call
	CommandStream = "k8s.stream" // exec, attach or port-forward: the upgraded exchange
)

// Conversation is one session's state: the HTTP exchanges in flight, which of
// them are on the secrets resource (their bodies are masked as Secrets), and
// what each exec has streamed. It implements protocol.Conversation.
type Conversation struct {
	HTTPMask httpproto.MaskState    `json:"http_mask"`
	HTTP     httpproto.Conversation `json:"http"`
	// Secret marks the exchanges (by channel) whose request is on secrets.
	Secret  map[int64]bool          `json:"secret,omitempty"`
	Streams map[int64]*StreamTotals `json:"streams,omitempty"`
}

// StreamTotals is what an exec, attach or port-forward carried.
type StreamTotals struct {
	Bytes  map[string]int64 `json:"bytes,omitempty"` // by frame kind
	Exit   *int32           `json:"exit,omitempty"`
	Reason string           `json:"reason,omitempty"`
}

// Mask implements protocol.Conversation.
func (c *Conversation) Mask(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	if IsStream(f.Kind) {
		return maskStream(f, r, counts)
	}
	local := protocol.Counts{}
	defer func() {
		for k, v := range local {
			counts.Add(k, v)
		}
	}()
	p := f.Payload
	switch f.Kind {
	case httpproto.KindRequest:
		c.noteRequest(f.Channel, f.Payload)
	case httpproto.KindRequestBody, httpproto.KindResponseBody:
		if len(p) > 0 {
			out, n, err := MaskSecrets(p, c.Secret[f.Channel])
			if err != nil {
				// A Secret body we cannot parse (a cut watch chunk, protobuf) goes whole.
				local.Add(MaskSecret, 1)
				return []byte(secretToken)
			}
			local.Add(MaskSecret, int64(n))
			p = out
		}
	case httpproto.KindRequestComplete, httpproto.KindResponseComplete:
		out, ok := c.maskCompleteSecrets(f, local)
		if !ok {
			local.Add(MaskSecret, 1)
			return []byte(secretToken)
		}
		p = out
	}
	g := *f
	g.Payload = p
	masked := c.HTTPMask.MaskFrame(&g, httpRules(r, local))
	if len(local) == 0 {
		return f.Payload // heads re-encode even when nothing in them matched
	}
	return masked
}

// maskCompleteSecrets masks the Secrets in a complete request's or response's
// body, as in its body frame, and notes a request on secrets. It reports false
// when the frame must be withheld whole: it is a fragment (the edge writes a
// complete frame only when it fits one, so a fragment is not its doing) or
// does not split into head, end and body, or its body is a Secret that does
// not parse.
func (c *Conversation) maskCompleteSecrets(f *schemas.Frame, counts protocol.Counts) ([]byte, bool) {
	if f.Fragment != 0 || !f.Final {
		return nil, false
	}
	head, end, body, err := httpproto.SplitComplete(f.Payload)
	if err != nil {
		return nil, false
	}
	if f.Kind == httpproto.KindRequestComplete {
		c.noteRequest(f.Channel, head)
	}
	if len(body) == 0 {
		return f.Payload, true
	}
	out, n, err := MaskSecrets(body, c.Secret[f.Channel])
	if err != nil {
		return nil, false
	}
	if n == 0 {
		return f.Payload, true
	}
	counts.Add(MaskSecret, int64(n))
	return httpproto.JoinComplete(head, end, out), true
}

// noteRequest marks the exchange on channel ch as on the secrets resource when
// its request head says so.
func (c *Conversation) noteRequest(ch int64, head []byte) {
	h, err := httpproto.DecodeHead(head)
	if err != nil || ParseCall(h.Method, h.Target).Resource != "secrets" {
		return
	}
	if c.Secret == nil {
		c.Secret = map[int64]bool{}
	}
	c.Secret[ch] = true
}

func maskStream(f *schemas.Frame, r protocol.MaskRules, counts protocol.Counts) []byte {
	switch f.Kind {
	case KindStdin, KindStdout, KindStderr, KindPortData, KindPortError:
		// Terminal bytes keep their length so a replayed screen keeps its layout.
		return r.Text(f.Payload, protocol.SameLength, counts)
	}
	return f.Payload
}

func httpRules(r protocol.MaskRules, counts protocol.Counts) httpproto.MaskRules {
	return httpproto.MaskRules{
		Header: r.Header,
		Field:  r.JSONField,
		Text:   func(b []byte) []byte { return r.Text(b, protocol.Token, counts) },
		Bytes:  func(b []byte) []byte { return r.Text(b, protocol.SameLength, counts) },
		Count:  counts.Add,
	}
}

// Withheld implements protocol.Conversation: a withheld request head may have
// been on secrets, so the exchange's bodies are treated as Secrets.
func (c *Conversation) Withheld(f *schemas.Frame) {
	if c.Secret == nil {
		c.Secret = map[int64]bool{}
	}
	c.Secret[f.Channel] = true
}

// Stitch implements protocol.Conversation.
func (c *Conversation) Stitch(f *schemas.Frame, _ protocol.Limits) []schemas.Command {
	if IsStream(f.Kind) {
		c.addStream(f)
		return nil
	}
	c.HTTP.KeepBody = -1
	e := c.HTTP.Add(f)
	if e == nil {
		return nil
	}
	return []schemas.Command{c.command(e)}
}

func (c *Conversation) addStream(f *schemas.Frame) {
	if c.Streams == nil {
		c.Streams = map[int64]*StreamTotals{}
	}
	s := c.Streams[f.Channel]
	if s == nil {
		s = &StreamTotals{Bytes: map[string]int64{}}
		c.Streams[f.Channel] = s
	}
	s.Bytes[f.Kind] += int64(len(f.Payload))
	if f.Kind == KindStatus {
		s.Exit, s.Reason = ExitStatus(f.Payload)
	}
}

// Flush implements protocol.Conversation: open exchanges end as incomplete.
func (c *Conversation) Flush(_ *schemas.Frame, why string) []schemas.Command {
	var out []schemas.Command
	for _, e := range c.HTTP.Flush() {
		cmd := c.command(e)
		cmd.Status, cmd.Error = httpproto.StatusIncomplete, why
		out = append(out, cmd)
	}
	return out
}

// command is the HTTP exchange's command renamed as the API call it was, with an
// exec's exit status in place of the 101 of its upgrade.
func (c *Conversation) command(e *httpproto.Exchange) schemas.Command {
	cmd := e.Command()
	cmd.Protocol, cmd.Kind = schemas.Kubernetes, CommandCall
	if e.Request != nil {
		cmd.Text = ParseCall(e.Request.Method, e.Request.Target).Text()
	}
	delete(c.Secret, e.Channel)
	s := c.Streams[e.Channel]
	delete(c.Streams, e.Channel)
	if s == nil {
		return cmd
	}
	cmd.Kind = CommandStream
	for _, k := range StreamKinds {
		if n := s.Bytes[k]; n > 0 {
			cmd.Params = append(cmd.Params, k[len("k8s."):]+"_bytes="+strconv.FormatInt(n, 10))
		}
	}
	if s.Exit != nil {
		cmd.ExitStatus = s.Exit
		cmd.Status, cmd.Error = httpproto.StatusOK, ""
		if *s.Exit != 0 {
			cmd.Status, cmd.Error = httpproto.StatusError, s.Reason
		}
	}
	return cmd
}

// status is the part of a metav1.Status the status channel carries.
type status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// ExitStatus reads the exit code from an exec's status channel message: Success
// is 0; NonZeroExitCode carries it as the ExitCode cause; other failures are
// reported as -1 with their message.
func ExitStatus(p []byte) (*int32, string) {
	var s status
	if json.Unmarshal(p, &s) != nil {
		return nil, ""
	}
	code := int32(0)
	if s.Status == "Success" {
		return &code, ""
	}
	code = -1
	for _, cause := range s.Details.Causes {
		if cause.Reason != "ExitCode" {
			continue
		}
		if n, err := strconv.ParseInt(cause.Message, 10, 32); err == nil {
			code = int32(n)
		}
	}
	return &code, s.Message
}
