package sshproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	sshproto "github.com/tapline/tapline/schemas/ssh"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/ingest/edgelimit"
)

// Bounds on teardown: how long a side that is still up gets to take the data the
// other side sent before leaving, and how long a failure notice may take to reach
// the agent.
const (
	drainTimeout  = 5 * time.Second
	noticeTimeout = 2 * time.Second
)

var errShutdown = errors.New("gateway shutdown")

// proxyConn relays one admitted agent connection to its target.
type proxyConn struct {
	log    *slog.Logger
	m      *metrics
	rec    Session
	target *resolvedTarget
	down   *ssh.ServerConn
	up     *upstream
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	nextID atomic.Int64
	limits *edgelimit.Limiter
	// deadline ends the session (token expiry or max length); zero: none.
	deadline       time.Time
	deadlineReason string
	channelsOpen   atomic.Int64 // agent-opened channels being opened or open

	mu       sync.Mutex
	pairs    map[int64]*pair
	reason   string
	failOnce sync.Once
	wg       sync.WaitGroup
}

func newProxyConn(a *admission, down *ssh.ServerConn) *proxyConn {
	ctx, cancel := context.WithCancel(context.WithoutCancel(a.ctx))
	return &proxyConn{
		log: a.log, m: a.srv.m, rec: a.rec, target: a.target, down: down, up: a.up,
		ctx: ctx, cancel: cancel, pairs: make(map[int64]*pair),
		limits: a.srv.limits, deadline: a.deadline, deadlineReason: a.deadlineReason,
	}
}

// run proxies until either side leaves, recording fails or the gateway shuts down,
// then records the session end.
func (c *proxyConn) run(shutdown context.Context, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	c.spawn(func() { c.globalRequests(reqs, true) })
	c.spawn(func() { c.globalRequests(c.up.reqs, false) })
	c.spawn(func() { c.channels(chans, true) })
	c.spawn(func() { c.channels(c.up.chans, false) })
	agentGone, targetGone := waitChan(c.down), waitChan(c.up.conn)
	deadline, stopDeadline := c.deadlineTimer()
	defer stopDeadline()

	select {
	case <-deadline:
		c.setReason(c.deadlineReason)
		c.fail(deadlineError(deadlineMessage(c.deadlineReason)))
	case <-agentGone:
		c.drain("agent disconnected")
	case <-targetGone:
		c.drain("target disconnected")
	case <-c.rec.Failed():
		c.fail(fmt.Errorf("recording failed: %w", c.rec.Err()))
	case <-shutdown.Done():
		c.fail(errShutdown)
	}
	c.closeBoth()
	c.wg.Wait()
	c.cancel()
	c.log.Info("SSH session ended", "reason", c.endReason())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.rec.End(ctx, c.endReason()); err != nil {
		c.log.Error("recording session end", "err", err)
	}
}

// deadlineTimer fires at the session's deadline; it never fires without one.
func (c *proxyConn) deadlineTimer() (<-chan time.Time, func()) {
	if c.deadline.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(c.deadline))
	return t.C, func() { t.Stop() }
}

// deadlineError ends a session at its deadline: expected, not a failure.
type deadlineError string

func (e deadlineError) Error() string { return string(e) }

func deadlineMessage(reason string) string {
	if reason == edgelimit.ReasonMaxSessionLength {
		return "the session reached the gateway's maximum session length; reconnect to continue"
	}
	return "the session's token expired; reconnect with a fresh token"
}

func (c *proxyConn) spawn(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func waitChan(conn ssh.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		conn.Wait()
		close(done)
	}()
	return done
}

// drain ends the connection after one side left: channels still open get up to
// drainTimeout to pass on what the departed side sent before the other side is
// disconnected too.
func (c *proxyConn) drain(reason string) {
	c.setReason(reason)
	deadline := time.After(drainTimeout)
	for {
		c.mu.Lock()
		n := len(c.pairs)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-deadline:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fail ends the connection at once, telling the agent why on the stderr of every
// open session channel (best effort, bounded by noticeTimeout). Concurrent calls
// return once the first one has told the agent and closed the connection.
func (c *proxyConn) fail(err error) {
	c.failOnce.Do(func() { c.failNow(err) })
}

func (c *proxyConn) failNow(err error) {
	c.setReason(err.Error())
	level := slog.LevelError
	var de deadlineError
	if err == errShutdown || errors.As(err, &de) {
		level = slog.LevelInfo
	}
	c.log.Log(context.Background(), level, "ending SSH session", "err", err)
	msg := fmt.Sprintf("\r\ntapline: %v; the connection is closed.\r\n", err)
	c.mu.Lock()
	pairs := make([]*pair, 0, len(c.pairs))
	for _, p := range c.pairs {
		pairs = append(pairs, p)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.notifyAgent(msg)
		}()
	}
	wg.Wait()
	c.closeBoth()
}

// setReason records the first reason the connection ends.
func (c *proxyConn) setReason(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == "" {
		c.reason = reason
	}
}

func (c *proxyConn) endReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

func (c *proxyConn) closeBoth() {
	c.down.Close()
	c.up.Close()
}

// recordClient records an agent→target frame; failure ends the connection, and the
// caller must not forward the message.
func (c *proxyConn) recordClient(kind string, channel int64, payload []byte) error {
	err := c.rec.Client(c.ctx, kind, channel, payload)
	if err != nil {
		go c.fail(fmt.Errorf("recording failed, agent input was not forwarded: %w", err))
	}
	return err
}

// recordServer records a target→agent or gateway-generated frame.
func (c *proxyConn) recordServer(kind string, channel int64, payload []byte) error {
	err := c.rec.Server(kind, channel, payload)
	if err != nil {
		go c.fail(fmt.Errorf("recording failed: %w", err))
	}
	return err
}

// record records a frame in the direction its sender implies.
func (c *proxyConn) record(fromAgent bool, kind string, channel int64, payload []byte) error {
	if fromAgent {
		return c.recordClient(kind, channel, payload)
	}
	return c.recordServer(kind, channel, payload)
}

func (c *proxyConn) globalRequests(reqs <-chan *ssh.Request, fromAgent bool) {
	// Sequential on purpose: SSH requires replies in request order.
	for req := range reqs {
		c.global(req, fromAgent)
	}
}

func (c *proxyConn) global(req *ssh.Request, fromAgent bool) {
	if c.record(fromAgent, sshproto.GlobalPrefix+req.Type, sshproto.GlobalChannel, req.Payload) != nil {
		req.Reply(false, nil)
		return
	}
	if reason := c.refuseGlobal(req.Type, fromAgent); reason != "" {
		c.log.Info("refused global request", "request", req.Type, "reason", reason)
		if req.WantReply {
			c.recordServer(sshproto.ReplyPrefix+req.Type, sshproto.GlobalChannel, replyPayload(msgRequestFailure, nil))
			req.Reply(false, nil)
		}
		return
	}
	other := ssh.Conn(c.up.conn)
	if !fromAgent {
		other = c.down
	}
	ok, resp, err := other.SendRequest(req.Type, req.WantReply, req.Payload)
	if err != nil {
		ok, resp = false, nil
	}
	if !req.WantReply {
		return
	}
	code := byte(msgRequestSuccess)
	if !ok {
		code = msgRequestFailure
	}
	if c.record(!fromAgent, sshproto.ReplyPrefix+req.Type, sshproto.GlobalChannel, replyPayload(code, resp)) != nil {
		ok, resp = false, nil
	}
	req.Reply(ok, resp)
}

// refuseGlobal says why a global request is not relayed, or "".
func (c *proxyConn) refuseGlobal(name string, fromAgent bool) string {
	switch {
	case !fromAgent && name == "hostkeys-00@openssh.com":
		// These are the target's host keys; relayed, the agent would file them
		// under the gateway's name.
		return "target host keys are not the gateway's"
	case fromAgent && name == "hostkeys-prove-00@openssh.com":
		return "the gateway announces no extra host keys"
	case isForwardRequest(name) && !c.target.SSH.AllowPortForwarding:
		return "port forwarding is not allowed for this target"
	}
	return ""
}

func isForwardRequest(name string) bool {
	switch name {
	case "tcpip-forward", "cancel-tcpip-forward",
		"streamlocal-forward@openssh.com", "cancel-streamlocal-forward@openssh.com":
		return true
	}
	return false
}

// SSH message numbers, used as the first byte of recorded replies.
const (
	msgRequestSuccess = 81
	msgRequestFailure = 82
	msgChannelSuccess = 99
	msgChannelFailure = 100
)

func replyPayload(code byte, data []byte) []byte {
	return append([]byte{code}, data...)
}

func (c *proxyConn) channels(chans <-chan ssh.NewChannel, fromAgent bool) {
	for nc := range chans {
		c.spawn(func() { c.open(nc, fromAgent) })
	}
}

// open relays a channel open from one side to the other.
func (c *proxyConn) open(nc ssh.NewChannel, fromAgent bool) {
	id := c.nextID.Add(1) - 1
	if c.record(fromAgent, sshproto.ChannelOpen, id, openPayload(nc)) != nil {
		nc.Reject(ssh.ResourceShortage, "recording failed")
		return
	}
	typ := channelType(nc.ChannelType())
	if fromAgent {
		defer c.channelsOpen.Add(-1)
		if err := c.limits.Channel(int(c.channelsOpen.Add(1) - 1)); err != nil {
			c.m.channels.WithLabelValues(typ, "limited").Inc()
			c.log.Warn("refused channel", "channel", id, "type", nc.ChannelType(), "reason", err)
			c.reject(nc, id, ssh.ResourceShortage, "tapline: "+err.Error())
			return
		}
	}
	if reason := c.refuseChannel(nc.ChannelType(), fromAgent); reason != "" {
		c.m.channels.WithLabelValues(typ, "refused").Inc()
		c.log.Info("refused channel", "channel", id, "type", nc.ChannelType(), "reason", reason)
		c.reject(nc, id, ssh.Prohibited, reason)
		return
	}
	other := ssh.Conn(c.up.conn)
	if !fromAgent {
		other = c.down
	}
	otherCh, otherReqs, err := other.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) {
			oe = &ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: err.Error()}
		}
		c.m.channels.WithLabelValues(typ, "failed").Inc()
		c.reject(nc, id, oe.Reason, oe.Message)
		return
	}
	c.m.channels.WithLabelValues(typ, "relayed").Inc()
	ch, reqs, err := nc.Accept()
	if err != nil {
		otherCh.Close()
		return
	}
	p := newPair(c, id, nc.ChannelType() == "session")
	if fromAgent {
		p.agent, p.agentReqs, p.target, p.targetReqs = ch, reqs, otherCh, otherReqs
	} else {
		p.agent, p.agentReqs, p.target, p.targetReqs = otherCh, otherReqs, ch, reqs
	}
	c.track(p)
	defer c.untrack(p)
	p.run()
}

func (c *proxyConn) reject(nc ssh.NewChannel, id int64, reason ssh.RejectionReason, msg string) {
	c.recordServer(sshproto.ChannelOpenFailure, id, openFailurePayload(reason, msg))
	nc.Reject(reason, msg)
}

// refuseChannel says why a channel type is not relayed, or "".
func (c *proxyConn) refuseChannel(typ string, fromAgent bool) string {
	cfg := c.target.SSH
	switch {
	case typ == "session" && fromAgent:
		return ""
	case (typ == "direct-tcpip" || typ == "direct-streamlocal@openssh.com") && fromAgent,
		(typ == "forwarded-tcpip" || typ == "forwarded-streamlocal@openssh.com") && !fromAgent:
		if cfg.AllowPortForwarding {
			return ""
		}
		return "port forwarding is not allowed for this target"
	case typ == "auth-agent@openssh.com" && !fromAgent:
		if cfg.AllowAgentForwarding {
			return ""
		}
		return "agent forwarding is not allowed for this target"
	}
	return fmt.Sprintf("channel type %q is not relayed by the gateway", typ)
}

func (c *proxyConn) track(p *pair) {
	c.mu.Lock()
	c.pairs[p.id] = p
	c.mu.Unlock()
}

func (c *proxyConn) untrack(p *pair) {
	c.mu.Lock()
	delete(c.pairs, p.id)
	c.mu.Unlock()
}

// openPayload is the channel type as an SSH string followed by the type-specific
// data, as in SSH_MSG_CHANNEL_OPEN after the sender's channel and window fields.
func openPayload(nc ssh.NewChannel) []byte {
	return append(sshString(nc.ChannelType()), nc.ExtraData()...)
}

// openFailurePayload is SSH_MSG_CHANNEL_OPEN_FAILURE after the recipient channel:
// reason code, description, language tag.
func openFailurePayload(reason ssh.RejectionReason, msg string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(reason))
	b = append(b, sshString(msg)...)
	return append(b, sshString("")...)
}

func sshString(s string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(s)), uint32(len(s)))
	return append(b, s...)
}

func (c *proxyConn) countBytes(fromAgent bool, n int) {
	if fromAgent {
		c.m.clientBytes.Add(float64(n))
	} else {
		c.m.serverBytes.Add(float64(n))
	}
}
