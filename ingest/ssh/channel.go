package sshproxy

import (
	sshproto "github.com/tapline/tapline/schemas/ssh"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Copy buffer sizes. Data frames are as large as what is waiting in the channel,
// up to dataChunk: in strict mode each agent→target frame waits for Kafka's ack, so
// larger frames mean fewer round trips for bulk transfers. Both stay well under the
// recorder's fragment limit.
const (
	dataChunk   = 256 << 10
	stderrChunk = 32 << 10
)

// pair relays one channel: the agent's end and the target's end. Memory is bounded
// by the SSH windows (the library buffers at most one window per end) plus one copy
// buffer per stream: a side that does not read stops the other side's window.
type pair struct {
	c       *proxyConn
	id      int64
	session bool

	agent, target         ssh.Channel
	agentReqs, targetReqs <-chan *ssh.Request

	// gate opens when agent→target data may flow. sshd drops data that reaches a
	// session channel before its shell, exec or subsystem request, and the SSH
	// library hands data and requests over separately, so a session's input waits
	// until that request has been passed on.
	gate        chan struct{}
	gateOnce    sync.Once
	agentClosed chan struct{} // the agent closed the channel (or the connection died)
	toTarget    chan struct{} // agent→target streams finished
	toAgent     chan struct{} // target→agent streams finished
	deferred    sync.WaitGroup
	// agentStderr serialises writes to the agent's stderr stream and the agent's
	// EOF (the library's per-stream packet buffer and EOF flag are not safe for
	// concurrent use): the pump and a failure notice may both write there.
	agentStderr chan struct{}
	// agentBusy and targetBusy are held while a side's request is being relayed:
	// that side must get its reply before the channel close.
	agentBusy, targetBusy sync.Mutex
}

func newPair(c *proxyConn, id int64, session bool) *pair {
	return &pair{
		c: c, id: id, session: session,
		gate: make(chan struct{}), agentClosed: make(chan struct{}),
		toTarget: make(chan struct{}), toAgent: make(chan struct{}),
		agentStderr: make(chan struct{}, 1),
	}
}

func (p *pair) run() {
	if !p.session {
		p.openGate()
	}
	go p.forward(true, p.toTarget)
	go p.forward(false, p.toAgent)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.agentRequests()
	}()
	go func() {
		defer wg.Done()
		p.targetRequests()
	}()
	wg.Wait()
}

func (p *pair) openGate() { p.gateOnce.Do(func() { close(p.gate) }) }

// forward copies both streams of one direction, then passes on the EOF.
func (p *pair) forward(fromAgent bool, done chan struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	var dataOK, extOK bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		dataOK = p.pump(fromAgent, false)
	}()
	go func() {
		defer wg.Done()
		extOK = p.pump(fromAgent, true)
	}()
	wg.Wait()
	if !dataOK || !extOK {
		return
	}
	// The library does not tell an EOF from a close; a close always follows an
	// EOF in practice, and an EOF passed on before a close is harmless.
	if p.c.record(fromAgent, sshproto.ChannelEOF, p.id, nil) != nil {
		return
	}
	if fromAgent {
		p.target.CloseWrite()
		return
	}
	// The library's EOF flag is unsynchronised with writers: exclude a notice.
	p.agentStderr <- struct{}{}
	p.agent.CloseWrite()
	<-p.agentStderr
}

// pump copies one stream (data or stderr) of one direction, recording each chunk
// before passing it on. It reports whether the stream ended with a clean EOF.
func (p *pair) pump(fromAgent, ext bool) bool {
	src, dst := p.target, p.agent
	if fromAgent {
		src, dst = p.agent, p.target
		if !p.waitGate() {
			return false
		}
	}
	var r io.Reader = src
	var w io.Writer = dst
	kind, size := sshproto.ChannelData, dataChunk
	if ext {
		r, w, kind, size = src.Stderr(), dst.Stderr(), sshproto.ChannelExtData, stderrChunk
	}
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if p.c.record(fromAgent, kind, p.id, buf[:n]) != nil {
				return false
			}
			if werr := p.write(w, buf[:n], ext && !fromAgent); werr != nil {
				return false
			}
			p.c.countBytes(fromAgent, n)
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

func (p *pair) waitGate() bool {
	select {
	case <-p.gate:
		return true
	case <-p.agentClosed:
		return false
	}
}

func (p *pair) write(w io.Writer, b []byte, agentStderr bool) error {
	if agentStderr {
		p.agentStderr <- struct{}{}
		defer func() { <-p.agentStderr }()
	}
	_, err := w.Write(b)
	return err
}

// notifyAgent writes msg to the agent's stderr on a session channel, giving up
// after noticeTimeout (the agent may not be reading).
func (p *pair) notifyAgent(msg string) {
	if !p.session {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case p.agentStderr <- struct{}{}:
		case <-time.After(noticeTimeout):
			return
		}
		defer func() { <-p.agentStderr }()
		p.agent.Stderr().Write([]byte(msg))
	}()
	select {
	case <-done:
	case <-time.After(noticeTimeout):
	}
}

// agentRequests relays the agent's channel requests, then its close.
func (p *pair) agentRequests() {
	for req := range p.agentReqs {
		p.agentRequest(req)
	}
	close(p.agentClosed)
	<-p.toTarget
	p.targetBusy.Lock()
	defer p.targetBusy.Unlock()
	if p.c.recordClient(sshproto.ChannelClose, p.id, nil) == nil {
		p.target.Close()
	}
}

// targetRequests relays the target's channel requests, then its close once every
// byte and deferred request reached the agent.
func (p *pair) targetRequests() {
	for req := range p.targetReqs {
		p.targetRequest(req)
	}
	<-p.toAgent
	p.deferred.Wait()
	p.agentBusy.Lock()
	defer p.agentBusy.Unlock()
	if p.c.recordServer(sshproto.ChannelClose, p.id, nil) == nil {
		p.agent.Close()
	}
}

func (p *pair) agentRequest(req *ssh.Request) {
	p.agentBusy.Lock()
	defer p.agentBusy.Unlock()
	c := p.c
	if c.recordClient(sshproto.RequestPrefix+req.Type, p.id, req.Payload) != nil {
		req.Reply(false, nil)
		return
	}
	if reason := p.refuseRequest(req.Type); reason != "" {
		c.log.Info("refused channel request", "channel", p.id, "request", req.Type, "reason", reason)
		if req.WantReply {
			c.recordServer(sshproto.ReplyPrefix+req.Type, p.id, []byte{msgChannelFailure})
			req.Reply(false, nil)
		}
		return
	}
	ok, err := p.target.SendRequest(req.Type, req.WantReply, req.Payload)
	if startsSession(req.Type) {
		p.openGate()
	}
	if !req.WantReply {
		return
	}
	ok = ok && err == nil
	c.recordServer(sshproto.ReplyPrefix+req.Type, p.id, []byte{channelReplyCode(ok)})
	req.Reply(ok, nil)
}

func (p *pair) targetRequest(req *ssh.Request) {
	if req.Type != "exit-status" && req.Type != "exit-signal" {
		p.relayToAgent(req)
		return
	}
	// The target may report the exit before its last output; the agent gets (and
	// the recording shows) the output first.
	p.deferred.Add(1)
	go func() {
		defer p.deferred.Done()
		<-p.toAgent
		p.relayToAgent(req)
	}()
}

func (p *pair) relayToAgent(req *ssh.Request) {
	p.targetBusy.Lock()
	defer p.targetBusy.Unlock()
	c := p.c
	if c.recordServer(sshproto.RequestPrefix+req.Type, p.id, req.Payload) != nil {
		req.Reply(false, nil)
		return
	}
	ok, err := p.agent.SendRequest(req.Type, req.WantReply, req.Payload)
	if !req.WantReply {
		return
	}
	ok = ok && err == nil
	if c.recordClient(sshproto.ReplyPrefix+req.Type, p.id, []byte{channelReplyCode(ok)}) != nil {
		ok = false
	}
	req.Reply(ok, nil)
}

// refuseRequest says why an agent's channel request is not relayed, or "".
func (p *pair) refuseRequest(name string) string {
	switch name {
	case "auth-agent-req@openssh.com":
		if !p.c.target.SSH.AllowAgentForwarding {
			return "agent forwarding is not allowed for this target"
		}
	case "x11-req":
		return "X11 forwarding is not relayed by the gateway"
	}
	return ""
}

func startsSession(name string) bool {
	return name == "shell" || name == "exec" || name == "subsystem"
}

func channelReplyCode(ok bool) byte {
	if ok {
		return msgChannelSuccess
	}
	return msgChannelFailure
}
