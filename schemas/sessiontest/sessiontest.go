// Package sessiontest builds recorded sessions the way a gateway writes them — sealed
// into the hash chain, with lifecycle frames and a signed session.end — for the
// processors' tests and benchmarks.
package sessiontest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/tapline/tapline/schemas"
)

// Session is a session being recorded.
type Session struct {
	ID        string
	Protocol  schemas.Protocol
	GatewayID string
	Key       ed25519.PrivateKey
	Frames    []schemas.Frame
	// Clock is the timestamp of the next frame; Step is added after each frame.
	Clock time.Time
	Step  time.Duration

	prev        []byte
	sealer      schemas.Sealer
	seq         int64
	bytesClient int64
	bytesServer int64
}

// NewKey returns a deterministic gateway key from a seed byte.
func NewKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

// Start begins a session with its session.start frame.
func Start(p schemas.Protocol, start schemas.SessionStart, key ed25519.PrivateKey, t0 time.Time) *Session {
	s := newSession(p, key, t0)
	payload, _ := json.Marshal(map[string]any{"start": start})
	st := start
	s.add(schemas.Server, schemas.KindSessionStart, 0, payload, func(f *schemas.Frame) { f.Start = &st })
	return s
}

// Denied records a denied session: session.denied then session.end.
func Denied(p schemas.Protocol, start schemas.SessionStart, reason string, key ed25519.PrivateKey, t0 time.Time) *Session {
	s := newSession(p, key, t0)
	payload, _ := json.Marshal(map[string]any{"start": start, "denial": reason})
	st := start
	s.add(schemas.Server, schemas.KindSessionDenied, 0, payload, func(f *schemas.Frame) { f.Start, f.Denial = &st, reason })
	s.End("denied")
	return s
}

func newSession(p schemas.Protocol, key ed25519.PrivateKey, t0 time.Time) *Session {
	id, err := uuid.NewV7()
	if err != nil {
		panic(err)
	}
	return &Session{ID: id.String(), Protocol: p, GatewayID: "gw-test", Key: key, Clock: t0.UTC().Truncate(time.Microsecond),
		Step: time.Millisecond, prev: schemas.ZeroHash}
}

// Add records one protocol message (one frame).
func (s *Session) Add(dir schemas.Direction, kind string, channel int64, payload []byte) *schemas.Frame {
	return s.add(dir, kind, channel, payload, nil)
}

// AddFragmented records one message as fragments of at most limit bytes.
func (s *Session) AddFragmented(dir schemas.Direction, kind string, channel int64, payload []byte, limit int) []schemas.Frame {
	first := len(s.Frames)
	for i := 0; i == 0 || i*limit < len(payload); i++ {
		end := min((i+1)*limit, len(payload))
		last := end == len(payload)
		frag := int32(i)
		s.add(dir, kind, channel, payload[i*limit:end], func(f *schemas.Frame) { f.Fragment, f.Final = frag, last })
	}
	return s.Frames[first:]
}

func (s *Session) add(dir schemas.Direction, kind string, channel int64, payload []byte, adjust func(*schemas.Frame)) *schemas.Frame {
	f := schemas.Frame{SessionID: s.ID, Seq: s.seq, TS: s.Clock, Direction: dir, Protocol: s.Protocol, Kind: kind,
		Channel: channel, Payload: append([]byte(nil), payload...), Final: true, GatewayID: s.GatewayID}
	if adjust != nil {
		adjust(&f)
	}
	if err := s.sealer.Seal(&f, s.prev); err != nil {
		panic(err)
	}
	if kind != schemas.KindSessionStart && kind != schemas.KindSessionDenied && kind != schemas.KindSessionEnd {
		if dir == schemas.Client {
			s.bytesClient += int64(len(payload))
		} else {
			s.bytesServer += int64(len(payload))
		}
	}
	s.prev = f.Hash
	s.seq++
	s.Clock = s.Clock.Add(s.Step)
	s.Frames = append(s.Frames, f)
	return &s.Frames[len(s.Frames)-1]
}

// End records the signed session.end.
func (s *Session) End(reason string) *schemas.Frame {
	e := schemas.SessionEnd{Reason: reason, LastSeq: s.seq - 1, Frames: s.seq, BytesClient: s.bytesClient,
		BytesServer: s.bytesServer, FinalHash: append([]byte(nil), s.prev...)}
	if err := schemas.SignEnd(s.Key, s.ID, &e); err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(e)
	return s.add(schemas.Server, schemas.KindSessionEnd, 0, payload, func(f *schemas.Frame) { f.End = &e })
}

// Seq is the seq the next frame gets.
func (s *Session) Seq() int64 { return s.seq }

// Load reads frames stored one JSON object per line (encoding/json of schemas.Frame),
// as in processors/testdata.
func Load(path string) ([]schemas.Frame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []schemas.Frame
	for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var f schemas.Frame
		if err := json.Unmarshal(line, &f); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, f)
	}
	return out, nil
}
