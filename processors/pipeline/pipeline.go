// Package pipeline is the processors' logic without Kafka: for each raw frame, in
// order, check integrity, mask, stitch, and keep the session's summary; for each idle
// session, close it as abandoned. It is deterministic — the same frames in the same
// order give the same outputs — and its per-session state can be saved and restored
// (as bytes) at any frame boundary, which is what the exactly-once runner relies on.
package pipeline

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all" // every protocol the processors handle
)

// Config is what a Processor needs.
type Config struct {
	Masker *mask.Masker
	// SigningKey signs every frame the Masker changed (schemas.SignMasked), so that
	// verify can tell a masked payload this processor wrote from one altered later.
	// Nil leaves masked frames unsigned; verify then reports them as unverifiable.
	SigningKey ed25519.PrivateKey
	// TrustedKeys are the gateway keys allowed to sign session ends; empty accepts
	// any key whose signature verifies.
	TrustedKeys integrity.Keys
	// IdleTimeout closes a session as abandoned when no frame came for this long.
	IdleTimeout time.Duration
	// AbandonedRetention is how long an abandoned session's state is kept, so that
	// late frames continue it rather than start an orphan.
	AbandonedRetention time.Duration
	// ClosedRetention is how long an ended session's tip is kept, to flag frames that
	// arrive after its end.
	ClosedRetention time.Duration
	// SummaryInterval bounds how often an active session's summary is re-emitted as
	// its counts change (event time).
	SummaryInterval time.Duration
	// HoldFor bounds how long a frame whose last bytes may begin a secret is held
	// back (event time: a later frame of the session this much younger releases
	// it; see hold.go).
	HoldFor time.Duration
	Limits  protocol.Limits
	// MaxIntegrity bounds the problems listed in a session's summary.
	MaxIntegrity int
	// FrameHook, when set, runs on every protocol frame before masking. Tests use it
	// to make one frame fail and watch the failure be contained.
	FrameHook func(*schemas.Frame)
}

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultAbandonedRetention = 24 * time.Hour
	DefaultClosedRetention    = 10 * time.Minute
	DefaultSummaryInterval    = time.Minute
	DefaultMaxIntegrity       = 32
)

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbandonedRetention <= 0 {
		c.AbandonedRetention = DefaultAbandonedRetention
	}
	if c.ClosedRetention <= 0 {
		c.ClosedRetention = DefaultClosedRetention
	}
	if c.SummaryInterval <= 0 {
		c.SummaryInterval = DefaultSummaryInterval
	}
	if c.HoldFor <= 0 {
		c.HoldFor = DefaultHoldFor
	}
	if c.MaxIntegrity <= 0 {
		c.MaxIntegrity = DefaultMaxIntegrity
	}
	return c
}

// Output is what processing produced, in order, per output topic.
type Output struct {
	Frames   []schemas.Frame
	Commands []schemas.Command
	Sessions []schemas.Session
	Audit    []audit.Record
}

// Reset empties o, keeping its storage.
func (o *Output) Reset() {
	o.Frames, o.Commands, o.Sessions, o.Audit = o.Frames[:0], o.Commands[:0], o.Sessions[:0], o.Audit[:0]
}

// Len is the number of records in o.
func (o *Output) Len() int { return len(o.Frames) + len(o.Commands) + len(o.Sessions) + len(o.Audit) }

// Processor processes the frames of a set of sessions (one raw partition's).
type Processor struct {
	cfg      Config
	sessions map[string]*session
	dirty    map[string]bool
	// stage is what the current frame is going through (stageMask, stageStitch, or
	// empty), so a failure drops only the state that stage may have left half-updated.
	stage string
}

// New returns an empty Processor.
func New(cfg Config) (*Processor, error) {
	if cfg.Masker == nil {
		return nil, fmt.Errorf("pipeline: a Masker is required")
	}
	return &Processor{cfg: cfg.withDefaults(), sessions: map[string]*session{}, dirty: map[string]bool{}}, nil
}

// Summary returns the current summary of a session held.
func (p *Processor) Summary(id string) (schemas.Session, bool) {
	s := p.sessions[id]
	if s == nil {
		return schemas.Session{}, false
	}
	return cloneSummary(&s.Summary), true
}

// Sessions is the number of sessions held.
func (p *Processor) Sessions() int { return len(p.sessions) }

// session is a session's whole state.
type session struct {
	Summary     schemas.Session `json:"summary"`
	Tip         integrity.Tip   `json:"tip"`
	LastTS      time.Time       `json:"last_ts"`
	SummaryTS   time.Time       `json:"summary_ts"` // event time of the last summary emitted
	Changed     bool            `json:"changed,omitempty"`
	Closed      bool            `json:"closed,omitempty"` // ended; kept until Sweep
	AbandonedAt *time.Time      `json:"abandoned_at,omitempty"`
	// Held are frames kept back, in seq order: the first waits for the next frame
	// of its stream (its last bytes may begin a secret), the others behind it.
	Held []heldFrame `json:"held,omitempty"`
	// Conv is the protocol's conversation (it masks and stitches the session's
	// frames), saved under "conv".
	Conv protocol.Conversation `json:"-"`
}

// Frame processes one raw frame and appends what it produced to out. A frame that
// fails (a panic or an error anywhere in checking, masking or stitching it) does not
// stop the session or the partition: Frame returns a *FrameError, and out holds the
// frame with its payload withheld and a processing_failed alert (see failed).
func (p *Processor) Frame(f schemas.Frame, out *Output) (err error) {
	mark := len(out.Frames)
	p.stage = ""
	defer func() {
		if v := recover(); v != nil {
			err = &FrameError{SessionID: f.SessionID, Seq: f.Seq, Kind: f.Kind, Panic: v, Stack: debug.Stack()}
		}
		if err != nil {
			p.failed(f, mark, err.(*FrameError), out)
		}
	}()
	p.frame(f, out)
	return nil
}

func (p *Processor) frame(f schemas.Frame, out *Output) {
	s := p.sessions[f.SessionID]
	if s == nil {
		s = newSession(&f)
		p.sessions[f.SessionID] = s
	}
	p.dirty[f.SessionID] = true
	// Only this processor vouches for what it masks: a signature already on a raw
	// frame was not made here.
	f.ProcessorSig = nil

	alerts, accept, sigOK := integrity.Check(&s.Tip, &f, p.cfg.TrustedKeys)
	if accept && (f.Kind == schemas.KindSessionStart || f.Kind == schemas.KindSessionDenied) {
		identify(s, &f) // so that alerts on the first frame already name the user
	}
	for _, a := range alerts {
		p.alert(s, a, f.TS, out)
	}
	if !accept {
		p.maybeSummary(s, f.TS, true, out)
		return
	}
	if s.AbandonedAt != nil {
		p.resume(s, &f, out)
	}
	s.LastTS = maxTime(s.LastTS, f.TS)
	sum := &s.Summary
	sum.Frames++
	sum.LastSeq = f.Seq
	sum.FinalHash = append(sum.FinalHash[:0], f.Hash...)
	s.Changed = true
	urgent := len(alerts) > 0

	switch f.Kind {
	case schemas.KindSessionStart:
		out.Frames = append(out.Frames, f)
		p.emitSummary(s, f.TS, out)
		out.Audit = append(out.Audit, audit.Lifecycle(audit.TypeSessionStart, sum, f.Seq, f.TS))
	case schemas.KindSessionDenied:
		out.Frames = append(out.Frames, f)
		sum.Status = schemas.StatusDenied
		if sum.EndReason = f.Denial; sum.EndReason == "" {
			sum.EndReason = parseDenial(f.Payload)
		}
		p.emitSummary(s, f.TS, out)
		out.Audit = append(out.Audit, audit.Lifecycle(audit.TypeSessionDenied, sum, f.Seq, f.TS))
	case schemas.KindSessionEnd:
		p.release(s, f.TS, true, out)
		out.Frames = append(out.Frames, f)
		p.end(s, &f, sigOK, out)
	default:
		if f.Direction == schemas.Client {
			sum.BytesClient += int64(len(f.Payload))
		} else {
			sum.BytesServer += int64(len(f.Payload))
		}
		if sum.Status == schemas.StatusDenied {
			p.alert(s, integrity.Alert{Kind: integrity.DeniedActivity, Seq: f.Seq,
				Detail: f.Kind + " frame in a denied session"}, f.TS, out)
			urgent = true
		}
		p.protocolFrame(s, &f, out)
	}
	p.maybeSummary(s, f.TS, urgent, out)
}

// identify fills the summary's identity from a session.start or session.denied.
func identify(s *session, f *schemas.Frame) {
	st := f.Start
	if st == nil {
		st = parseStart(f.Payload)
	}
	sum := &s.Summary
	sum.StartedAt = f.TS
	sum.GatewayID = f.GatewayID
	if st != nil {
		sum.Target, sum.Issuer, sum.Subject, sum.Email, sum.Name = st.Target, st.Issuer, st.Subject, st.Email, st.Name
		sum.Groups, sum.TokenID, sum.ClientAddr = st.Groups, st.TokenID, st.ClientAddr
	}
}

func newSession(f *schemas.Frame) *session {
	return &session{
		Summary: schemas.Session{SessionID: f.SessionID, Protocol: f.Protocol, GatewayID: f.GatewayID,
			StartedAt: f.TS, Status: schemas.StatusActive, LastSeq: -1},
		Tip: integrity.NewTip(),
	}
}

// protocolFrame masks, forwards and stitches one protocol frame.
func (p *Processor) protocolFrame(s *session, f *schemas.Frame, out *Output) {
	conv := s.conversation()
	p.stage = stageMask
	if p.cfg.FrameHook != nil {
		p.cfg.FrameHook(f)
	}
	masked := p.cfg.Masker.Frame(f, s.Summary.Target, conv) != nil
	var h protocol.Hold
	if hc, ok := s.Conv.(protocol.Holding); ok {
		h = hc.Hold(f)
	}
	if p.hold(s, f, masked, h, out) {
		return
	}
	if masked && p.cfg.SigningKey != nil {
		// Fails only for a session id that is not a UUID, which integrity already
		// flagged; the frame then stays unsigned and verify reports it.
		_ = schemas.SignMasked(p.cfg.SigningKey, f)
	}
	out.Frames = append(out.Frames, *f)
	p.stage = stageStitch
	p.stitch(s, f, out)
}

// conversation returns the session's conversation, starting one for a protocol
// that has them; nil for the others (their frames are masked as text and stitch
// into no commands).
func (s *session) conversation() protocol.Conversation {
	if s.Conv != nil {
		return s.Conv
	}
	if p, err := protocol.Of[protocol.Conversations](s.Summary.Protocol); err == nil {
		s.Conv = p.NewConversation()
	}
	return s.Conv
}

// plainSession is session without its JSON methods.
type plainSession session

// MarshalJSON saves the conversation under "conv".
func (s *session) MarshalJSON() ([]byte, error) {
	b, err := appendSession(make([]byte, 0, 1024), s)
	if err != nil || s.Conv == nil {
		return b, err
	}
	c, err := json.Marshal(s.Conv)
	if err != nil {
		return nil, err
	}
	return append(append(append(b[:len(b)-1], `,"conv":`...), c...), '}'), nil
}

func (s *session) restoreConversation(cp protocol.Conversations, b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	conv := fields["conv"]
	if len(conv) == 0 || string(conv) == "null" {
		return s.restoreOlderConversation(cp, fields)
	}
	c := cp.NewConversation()
	if err := json.Unmarshal(conv, c); err != nil {
		return fmt.Errorf("conversation state: %w", err)
	}
	s.Conv = c
	return nil
}

// restoreOlderConversation restores a conversation that an earlier build saved in
// other fields, for protocols that had no conversation then.
func (s *session) restoreOlderConversation(cp protocol.Conversations, fields map[string]json.RawMessage) error {
	r, ok := cp.(protocol.ConversationRestorer)
	if !ok || s.Closed {
		return nil
	}
	c, err := r.RestoreConversation(fields)
	if err != nil {
		return fmt.Errorf("conversation state: %w", err)
	}
	s.Conv = c
	return nil
}

// UnmarshalJSON restores the conversation (see restoreConversation).
func (s *session) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, (*plainSession)(s)); err != nil {
		return err
	}
	cp, err := protocol.Of[protocol.Conversations](s.Summary.Protocol)
	if err != nil {
		return nil // a protocol without conversations
	}
	return s.restoreConversation(cp, b)
}

// commands finishes stitched commands (identity, safety-net masking) and emits them
// with their audit records.
func (p *Processor) commands(s *session, cmds []schemas.Command, out *Output) {
	for i := range cmds {
		c := &cmds[i]
		c.SessionID, c.Protocol, c.Target, c.Subject = s.Summary.SessionID, s.Summary.Protocol, s.Summary.Target, s.Summary.Subject
		validText(c)
		counts := mask.Counts{}
		c.Text = p.cfg.Masker.Text(s.Summary.Target, c.Text, counts)
		for j, prm := range c.Params {
			c.Params[j] = p.cfg.Masker.Text(s.Summary.Target, prm, counts)
		}
		c.Error = p.cfg.Masker.Text(s.Summary.Target, c.Error, counts)
		for k, v := range counts {
			if c.Masks == nil {
				c.Masks = map[string]int64{}
			}
			c.Masks[k] += v
		}
		s.Summary.Commands++
		s.Changed = true
		out.Commands = append(out.Commands, *c)
		out.Audit = append(out.Audit, audit.Command(&s.Summary, c))
	}
}

func (p *Processor) end(s *session, f *schemas.Frame, sigOK *bool, out *Output) {
	sum := &s.Summary
	p.flushCommands(s, f, "session ended before the command completed", out)
	e := f.End
	if e == nil {
		e = parseEnd(f.Payload)
	}
	// A denied session keeps its denial as the reason.
	if e != nil && (sum.Status != schemas.StatusDenied || sum.EndReason == "") {
		sum.EndReason = e.Reason
	}
	if sum.Status != schemas.StatusDenied {
		sum.Status = schemas.StatusEnded
	}
	ended := f.TS
	sum.EndedAt = &ended
	sum.SignatureOK = sigOK
	p.emitSummary(s, f.TS, out)
	out.Audit = append(out.Audit, audit.Lifecycle(audit.TypeSessionEnd, sum, f.Seq, f.TS))
	// Keep only the tip, to recognise frames arriving after the end, until Sweep.
	s.Closed = true
	s.Conv = nil
}

// flushCommands emits the session's unfinished commands.
func (p *Processor) flushCommands(s *session, f *schemas.Frame, why string, out *Output) {
	var cmds []schemas.Command
	if s.Conv != nil {
		cmds = s.Conv.Flush(f, why)
	}
	p.commands(s, cmds, out)
}

func (p *Processor) alert(s *session, a integrity.Alert, ts time.Time, out *Output) {
	sum := &s.Summary
	if len(sum.Integrity) < p.cfg.MaxIntegrity {
		sum.Integrity = append(sum.Integrity, a.String())
	} else if len(sum.Integrity) == p.cfg.MaxIntegrity {
		sum.Integrity = append(sum.Integrity, "more problems: see the audit topic")
	}
	s.Changed = true
	out.Audit = append(out.Audit, audit.Alert(sum, a.Kind, a.Detail, a.Seq, ts))
}

// maybeSummary re-emits an active session's summary when it changed: at once after an
// integrity alert, otherwise when the last one is older than the summary interval.
func (p *Processor) maybeSummary(s *session, ts time.Time, now bool, out *Output) {
	if !s.Changed || s.Closed {
		return
	}
	if now || ts.Sub(s.SummaryTS) >= p.cfg.SummaryInterval {
		p.emitSummary(s, ts, out)
	}
}

func (p *Processor) emitSummary(s *session, ts time.Time, out *Output) {
	s.Summary.Version++
	s.SummaryTS = ts
	s.Changed = false
	out.Sessions = append(out.Sessions, cloneSummary(&s.Summary))
}

func cloneSummary(s *schemas.Session) schemas.Session {
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	c.Integrity = append([]string(nil), s.Integrity...)
	c.FinalHash = append([]byte(nil), s.FinalHash...)
	if s.EndedAt != nil {
		t := *s.EndedAt
		c.EndedAt = &t
	}
	if s.SignatureOK != nil {
		b := *s.SignatureOK
		c.SignatureOK = &b
	}
	return c
}

// resume reopens an abandoned session that turned out to be alive.
func (p *Processor) resume(s *session, f *schemas.Frame, out *Output) {
	s.AbandonedAt = nil
	s.Summary.Status = schemas.StatusActive
	s.Summary.EndedAt = nil
	s.Summary.EndReason = ""
	p.emitSummary(s, f.TS, out)
	out.Audit = append(out.Audit, audit.Lifecycle(audit.TypeSessionResumed, &s.Summary, f.Seq, f.TS))
}

// Sweep closes sessions idle for longer than the idle timeout as abandoned, and
// forgets abandoned sessions past their retention. now is the processor's clock; the
// runner calls Sweep only when its partition has no unread frames, so a session is
// never abandoned because the processor was behind.
func (p *Processor) Sweep(now time.Time, out *Output) {
	ids := make([]string, 0, len(p.sessions))
	for id := range p.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := p.sessions[id]
		switch {
		case s.Closed:
			if now.Sub(s.LastTS) > p.cfg.ClosedRetention {
				delete(p.sessions, id)
				p.dirty[id] = true
			}
		case s.AbandonedAt != nil:
			if now.Sub(*s.AbandonedAt) > p.cfg.AbandonedRetention {
				delete(p.sessions, id)
				p.dirty[id] = true
			}
		case !s.Closed && now.Sub(s.LastTS) > p.cfg.IdleTimeout:
			p.abandon(s, now, out)
			p.dirty[id] = true
		}
	}
}

func (p *Processor) abandon(s *session, now time.Time, out *Output) {
	last := &schemas.Frame{SessionID: s.Summary.SessionID, Seq: s.Tip.Seq, TS: s.LastTS, Protocol: s.Summary.Protocol}
	p.release(s, s.LastTS, true, out)
	p.flushCommands(s, last, "session abandoned: no frames for longer than the idle timeout", out)
	sum := &s.Summary
	sum.Status = schemas.StatusAbandoned
	sum.EndReason = fmt.Sprintf("no frames for %s (idle timeout %s) and no session.end", now.Sub(s.LastTS).Round(time.Second), p.cfg.IdleTimeout)
	ended := s.LastTS
	sum.EndedAt = &ended
	a := now
	s.AbandonedAt = &a
	p.emitSummary(s, now, out)
	out.Audit = append(out.Audit, audit.Lifecycle(audit.TypeSessionAbandoned, sum, s.Tip.Seq, now))
}

// StateChange is a session's saved state, or nil Value once the session is gone.
type StateChange struct {
	SessionID string
	Value     []byte
}

// TakeDirty returns the state of every session changed since the last call (nil
// Value for sessions that ended or were forgotten), sorted by session id.
func (p *Processor) TakeDirty() ([]StateChange, error) {
	ids := make([]string, 0, len(p.dirty))
	for id := range p.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]StateChange, 0, len(ids))
	for _, id := range ids {
		s := p.sessions[id]
		if s == nil {
			out = append(out, StateChange{SessionID: id})
			continue
		}
		// Called directly: json.Marshal would re-scan and compact what MarshalJSON
		// returned, a third of the cost of saving a session.
		b, err := s.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("session %s: save state: %w", id, err)
		}
		out = append(out, StateChange{SessionID: id, Value: b})
	}
	clear(p.dirty)
	return out, nil
}

// Restore loads a session's saved state (nil value: forget the session).
func (p *Processor) Restore(id string, value []byte) error {
	if value == nil {
		delete(p.sessions, id)
		return nil
	}
	s := &session{}
	if err := json.Unmarshal(value, s); err != nil {
		return fmt.Errorf("session %s: restore state: %w", id, err)
	}
	p.sessions[id] = s
	return nil
}

func parseStart(payload []byte) *schemas.SessionStart {
	var v struct {
		Start *schemas.SessionStart `json:"start"`
	}
	if json.Unmarshal(payload, &v) == nil && v.Start != nil {
		return v.Start
	}
	var s schemas.SessionStart
	if json.Unmarshal(payload, &s) == nil {
		return &s
	}
	return nil
}

func parseDenial(payload []byte) string {
	var v struct {
		Denial string `json:"denial"`
	}
	_ = json.Unmarshal(payload, &v)
	return v.Denial
}

func parseEnd(payload []byte) *schemas.SessionEnd {
	var e schemas.SessionEnd
	if json.Unmarshal(payload, &e) != nil {
		return nil
	}
	return &e
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// validText replaces each byte of a command's text, parameters and error that is
// not UTF-8 with U+FFFD, as encoding/json does when a command still waiting for
// its answer is saved with the session's state: a command comes out the same
// whether or not the processor restarted while it was open. The frames keep the
// bytes as sent; Avro strings and the JSON of audit records are UTF-8 anyway.
func validText(c *schemas.Command) {
	c.Text = validUTF8(c.Text)
	for i, prm := range c.Params {
		c.Params[i] = validUTF8(prm)
	}
	c.Error = validUTF8(c.Error)
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
