package sessiontest

// Builder is the fluent form of Session for tests that write a session message by
// message: session.start, protocol frames split into fragments past a size, a
// signed session.end.

import (
	"crypto/ed25519"
	"encoding/json"
	"iter"
	"time"

	"github.com/google/uuid"

	"github.com/tapline/tapline/schemas"
)

// Builder accumulates one session's frames.
type Builder struct {
	ID            string
	Protocol      schemas.Protocol
	Start         schemas.SessionStart
	Frames        []schemas.Frame
	Key           ed25519.PrivateKey
	FragmentBytes int // 0: never fragment
	Now           time.Time
	prev          []byte
	sealer        schemas.Sealer
}

// New starts a session with its session.start frame.
func New(p schemas.Protocol, start schemas.SessionStart) *Builder {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	b := &Builder{
		ID: uuid.Must(uuid.NewV7()).String(), Protocol: p, Start: start, Key: key,
		Now: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC), prev: schemas.ZeroHash,
	}
	payload, _ := json.Marshal(map[string]any{"start": start})
	st := start
	b.add(schemas.Frame{Direction: schemas.Server, Kind: schemas.KindSessionStart, Payload: payload, Final: true, Start: &st})
	return b
}

// NewDenied records a refused connection as the gateway does: session.denied at
// seq 0, then the signed session.end.
func NewDenied(p schemas.Protocol, start schemas.SessionStart, reason string) *Builder {
	b := New(p, start)
	b.Frames, b.prev = nil, schemas.ZeroHash
	payload, _ := json.Marshal(map[string]any{"start": start, "denial": reason})
	st := start
	b.add(schemas.Frame{Direction: schemas.Server, Kind: schemas.KindSessionDenied, Payload: payload, Final: true, Start: &st, Denial: reason})
	return b.End("denied: " + reason)
}

// Step advances the recording clock.
func (b *Builder) Step(d time.Duration) *Builder {
	b.Now = b.Now.Add(d)
	return b
}

// Client records an agent→target message.
func (b *Builder) Client(kind string, channel int64, payload []byte) *Builder {
	return b.message(schemas.Client, kind, channel, payload)
}

// Server records a target→agent message.
func (b *Builder) Server(kind string, channel int64, payload []byte) *Builder {
	return b.message(schemas.Server, kind, channel, payload)
}

func (b *Builder) message(dir schemas.Direction, kind string, channel int64, payload []byte) *Builder {
	size := b.FragmentBytes
	if size <= 0 || len(payload) <= size {
		b.add(schemas.Frame{Direction: dir, Kind: kind, Channel: channel, Payload: payload, Final: true})
		return b
	}
	for i := 0; len(payload) > 0; i++ {
		n := min(size, len(payload))
		b.add(schemas.Frame{Direction: dir, Kind: kind, Channel: channel, Payload: payload[:n], Fragment: int32(i), Final: n == len(payload)})
		payload = payload[n:]
	}
	return b
}

func (b *Builder) add(f schemas.Frame) {
	f.SessionID = b.ID
	f.Seq = int64(len(b.Frames))
	f.TS = b.Now
	f.Protocol = b.Protocol
	f.GatewayID = "gw-test"
	if err := b.sealer.Seal(&f, b.prev); err != nil {
		panic(err)
	}
	b.prev = f.Hash
	b.Frames = append(b.Frames, f)
}

// End appends the signed session.end.
func (b *Builder) End(reason string) *Builder {
	last := b.Frames[len(b.Frames)-1]
	e := schemas.SessionEnd{Reason: reason, LastSeq: last.Seq, Frames: int64(len(b.Frames)) + 1, FinalHash: last.Hash}
	for _, f := range b.Frames {
		if f.Direction == schemas.Client {
			e.BytesClient += int64(len(f.Payload))
		} else {
			e.BytesServer += int64(len(f.Payload))
		}
	}
	if err := schemas.SignEnd(b.Key, b.ID, &e); err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(e)
	b.add(schemas.Frame{Direction: schemas.Server, Kind: schemas.KindSessionEnd, Payload: payload, Final: true, End: &e})
	return b
}

// Seq iterates frames.
func Seq(frames []schemas.Frame) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		for _, f := range frames {
			if !yield(f, nil) {
				return
			}
		}
	}
}

// Must panics on an encoding error; for building test payloads.
func Must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
