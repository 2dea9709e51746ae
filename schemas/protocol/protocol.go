// Package protocol is the registry of recorded protocols. Each protocol package
// (schemas/postgres, schemas/ssh, ...) registers one Protocol; the processors (mask,
// stitch, summaries, audit), the query side (replay, command listing) and verify look
// a session's protocol up here instead of switching on its name.
//
// A Protocol always has a Name and its frame Kinds. What else it supports is told by
// the optional interfaces below (Conversations, Replayer, Audited, ...): callers assert
// them, so a new protocol can start with the parts it has.
package protocol

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/tapline/tapline/schemas"
)

// Protocol is one recorded protocol.
type Protocol interface {
	// Name is the protocol as frames and sessions carry it.
	Name() schemas.Protocol
	// Kinds lists the frame kinds its edge writes (lifecycle kinds excluded). A kind
	// ending in '.' is a prefix (ssh.request.<name>).
	Kinds() []string
}

// Conversations is a protocol whose frames are masked field by field and stitched
// into commands. Both run on one Conversation per session, so the masker sees what
// the stitcher knows (the columns of the rows being masked).
type Conversations interface {
	Protocol
	// NewConversation returns the state of a new session.
	NewConversation() Conversation
}

// Conversation is one session's protocol state as the processor carries it from
// frame to frame. It is persisted with encoding/json between frames, so its state
// lives in exported fields.
type Conversation interface {
	// Mask returns f's payload masked under r (f.Payload itself when nothing
	// matched), adding what it masked to counts. It runs before Stitch on each frame.
	Mask(f *schemas.Frame, r MaskRules, counts Counts) []byte
	// Withheld readies the state for the frames after f, whose payload could not be
	// masked and was withheld: it assumes the worst about what f held.
	Withheld(f *schemas.Frame)
	// Stitch reads one masked frame and returns the commands it completed.
	Stitch(f *schemas.Frame, lim Limits) []schemas.Command
	// Flush ends the session (f is its last frame; why says how it ended) and returns
	// the commands still open, with their final status.
	Flush(f *schemas.Frame, why string) []schemas.Command
}

// ConversationRestorer is a Conversations protocol whose sessions earlier builds
// saved elsewhere in the processor's session state (before the protocol had a
// conversation): it rebuilds the conversation from those fields.
type ConversationRestorer interface {
	Conversations
	// RestoreConversation rebuilds a session's conversation from the top-level
	// fields of its saved state, which hold no conversation of their own.
	RestoreConversation(saved map[string]json.RawMessage) (Conversation, error)
}

// Style is how a masked value is written.
type Style int

const (
	Token      Style = iota // "[masked:type]": structured payloads whose framing is rewritten
	SameLength              // '*' per byte, line breaks kept: terminal streams, fragments
)

// Counts is what was masked, by type.
type Counts map[string]int64

// Add counts n more values of typ.
func (c Counts) Add(typ string, n int64) {
	if n > 0 {
		c[typ] += n
	}
}

// MaskRules are one target's masking rules as a protocol package applies them.
type MaskRules interface {
	// Text masks detector and regex matches in b, returning b itself when nothing
	// matched.
	Text(b []byte, st Style, counts Counts) []byte
	// Column reports whether values of a result column (by name) are masked whole.
	Column(name string) bool
	// Param reports whether bind parameter i (0-based) is masked whole.
	Param(i int) bool
	// Header reports whether the value of a header (lower-case name) is masked.
	Header(name string) bool
	// JSONField reports whether the value of a JSON field (by name) is masked.
	JSONField(name string) bool
}

// TableRules are MaskRules that know the column order of declared tables, so
// values bound by position (an INSERT or COPY without a column list, a prepared
// positional INSERT) can be tied to column rules (processors/mask's are).
type TableRules interface {
	MaskRules
	// TableColumns returns the columns of a table in order, resolved as PostgreSQL
	// resolves the name with the default search_path (schema "" is public), and
	// false when the table is not declared.
	TableColumns(schema, table string) ([]string, bool)
}

// StreamRules are MaskRules that also mask byte streams cut into frames
// (processors/mask's are): a protocol whose payloads are a stream asserts them.
type StreamRules interface {
	MaskRules
	// Stream masks b where it continues a stream whose last bytes, as already
	// emitted or held back (masked), are prev: a match that begins in prev and ends
	// in b (a secret split across frames) is masked in b, and reported in Back for
	// the frames still held. open is the Open that Stream returned for prev: the
	// type of a match that ran to its end, whose rest b may begin with.
	Stream(prev, b []byte, open string, st Style, counts Counts) Streamed
}

// Streamed is what StreamRules.Stream made of one frame of a stream.
type Streamed struct {
	// Out is b masked (b itself when nothing in it matched).
	Out []byte
	// Open is the type of a match that runs to the very end of b ("" if none).
	Open string
	// Back are the matches found in prev's bytes that are not masked there yet
	// (one that ends in b, or one in prev's pending bytes that b completed): a
	// frame still held back must have them masked too.
	Back []Span
	// Pending is how many bytes at the end of prev+b may be the start of a secret
	// that more bytes would complete: frames holding them are held back.
	Pending int
}

// Span is a match in the bytes before a frame, counted back from their end: it
// covers the bytes from From before the end up to To before it (From > To >= 0).
type Span struct {
	From, To int
	Type     string
}

// Holding is a Conversation whose frames continue byte streams (SSH channel data):
// a frame whose last bytes may begin a secret is held back, unemitted, until the
// next frame of its stream shows whether they did (see docs/processors.md,
// "Hold-back").
type Holding interface {
	Conversation
	// Hold says, after Mask(f), which stream f continued and how: the
	// processors keep f and the frames after it until the stream's earlier held
	// frames are final.
	Hold(f *schemas.Frame) Hold
}

// Hold is where one frame leaves its byte stream.
type Hold struct {
	// Stream names f's byte stream within the session ("" if f continues none).
	Stream string
	// Back are secrets found (completed by f) in the stream's bytes before f:
	// mask them in the frames still held.
	Back []Span
	// Pending bytes at the end of the stream, f included, may begin a secret not
	// yet complete: the held frames holding them stay held.
	Pending int
	// Ended lists the streams f ended (their held frames are final).
	Ended []string
}

// Limits bound what a session's conversation holds; zero fields take DefaultLimits.
type Limits struct {
	MaxText      int // command text and parameters kept per command (bytes); longer is cut
	MaxStmtBytes int // total text of prepared statements kept per session
	MaxQueue     int // client messages awaiting an answer
	// MaxQueueText bounds the text and parameters held by commands awaiting an
	// answer; past it, further queued commands keep only a short prefix (a pipeline
	// of thousands of statements must not make the session's state huge).
	MaxQueueText int
}

// DefaultLimits are used where a Limits field is zero.
var DefaultLimits = Limits{MaxText: 16 << 10, MaxStmtBytes: 256 << 10, MaxQueue: 4096, MaxQueueText: 512 << 10}

// WithDefaults returns l with its zero fields set from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	if l.MaxText <= 0 {
		l.MaxText = DefaultLimits.MaxText
	}
	if l.MaxStmtBytes <= 0 {
		l.MaxStmtBytes = DefaultLimits.MaxStmtBytes
	}
	if l.MaxQueue <= 0 {
		l.MaxQueue = DefaultLimits.MaxQueue
	}
	if l.MaxQueueText <= 0 {
		l.MaxQueueText = DefaultLimits.MaxQueueText
	}
	return l
}

// Replayer is a protocol whose sessions can be replayed.
type Replayer interface {
	Protocol
	// Formats lists the replay formats, the default first.
	Formats() []string
	// Replay writes a session's frames to w in format (one of Formats). flush (may
	// be nil) runs after each event.
	Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], opt ReplayOptions, flush func()) error
	// Commands returns the commands the replay shows, as stitching pairs them: the
	// same conversation model, so the two cannot disagree.
	Commands(frames iter.Seq2[schemas.Frame, error], lim Limits) ([]schemas.Command, error)
}

// ReplayOptions tune a replay.
type ReplayOptions struct {
	MaxRows         int    // rows kept per result table; the rest are counted
	MaxCellBytes    int    // bytes kept per value
	MaxMessageBytes int    // bound on one reassembled message
	Channel         *int64 // the channel to play as the terminal; nil picks the first
}

// Playing is a protocol whose replay plays back in a terminal with its recorded
// timing (`tapline replay --speed`).
type Playing interface {
	Protocol
	// PlayFormat is the replay format that playback reads (one of Formats).
	PlayFormat() string
	// Play renders a replay stream in PlayFormat to w as the terminal shows it,
	// calling wait with the recorded gap before each event; an error from wait
	// (the context ended) stops it.
	Play(r io.Reader, w io.Writer, wait func(time.Duration) error) error
}

// Warming is a protocol with something slow to start (a parser), which the
// processors start in the background when they start.
type Warming interface {
	Protocol
	WarmUp()
}

// Audited says how a protocol's commands map to OCSF activity classes.
type Audited interface {
	Protocol
	// OCSFClass names the OCSF class family of its commands: "datastore", "ssh",
	// "http" or "api".
	OCSFClass() string
}

var (
	mu       sync.RWMutex
	registry = map[schemas.Protocol]Protocol{}
)

// Register adds a protocol; protocol packages call it from init. Registering a name
// twice is a programming error and panics.
func Register(p Protocol) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[p.Name()]; dup {
		panic(fmt.Sprintf("protocol %s registered twice", p.Name()))
	}
	registry[p.Name()] = p
}

// Lookup returns a registered protocol.
func Lookup(name schemas.Protocol) (Protocol, bool) {
	mu.RLock()
	defer mu.RUnlock()
	p, ok := registry[name]
	return p, ok
}

// All returns the registered protocols, by name.
func All() []Protocol {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Protocol, 0, len(registry))
	for _, p := range registry {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Protocol) int { return cmp.Compare(a.Name(), b.Name()) })
	return out
}

// Of returns the named protocol if it supports capability T (Conversations, Replayer,
// Audited), with an error that says what is missing otherwise.
func Of[T Protocol](name schemas.Protocol) (T, error) {
	var zero T
	p, ok := Lookup(name)
	if !ok {
		return zero, fmt.Errorf("protocol %q is not registered (known: %v)", name, names())
	}
	t, ok := p.(T)
	if !ok {
		return zero, fmt.Errorf("protocol %s does not support this (%T)", name, zero)
	}
	return t, nil
}

func names() []schemas.Protocol {
	var out []schemas.Protocol
	for _, p := range All() {
		out = append(out, p.Name())
	}
	return out
}

// Swap registers p in place of whatever is registered under its name, until restore
// is called. It is for tests that stand a protocol in for a real one.
func Swap(p Protocol) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	old, had := registry[p.Name()]
	registry[p.Name()] = p
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if had {
			registry[p.Name()] = old
		} else {
			delete(registry, p.Name())
		}
	}
}
