package recorder

import (
	"context"

	"github.com/tapline/tapline/schemas"
)

// Sessions is what an edge needs of the recorder: start a recorded session, or
// record a refused one. For adapts a *Recorder; edges' unit tests fake it.
type Sessions interface {
	// Start writes session.start and returns once Kafka has it; an error means
	// the session cannot be recorded and must be refused.
	Start(ctx context.Context, start schemas.SessionStart) (Recording, error)
	// Deny records a refused connection (session.denied, then session.end).
	Deny(ctx context.Context, start schemas.SessionStart, reason string) error
}

// Recording is one recorded session as an edge drives it; *Session satisfies it.
//
// Client (or ClientBatch, for messages read together) must have returned nil
// before the agent's bytes are forwarded: in strict mode it returns once Kafka
// acknowledged them. Server is asynchronous. Failed is closed when recording
// broke; the edge then ends the connection.
type Recording interface {
	ID() string
	Client(ctx context.Context, kind string, channel int64, payload []byte) error
	ClientBatch(ctx context.Context, msgs []Message) error
	Server(kind string, channel int64, payload []byte) error
	End(ctx context.Context, reason string) error
	Failed() <-chan struct{}
	Err() error
}

var _ Recording = (*Session)(nil)

// For adapts r to Sessions for an edge whose sessions are of protocol p.
// protocolOf, when set, names another protocol by target ("" keeps p): for
// protocols recorded by another's edge (the Kubernetes API on the HTTP edge).
func For(r *Recorder, p schemas.Protocol, protocolOf func(target string) schemas.Protocol) Sessions {
	return edge{r, p, protocolOf}
}

type edge struct {
	r          *Recorder
	p          schemas.Protocol
	protocolOf func(string) schemas.Protocol
}

func (e edge) meta(start schemas.SessionStart) Meta {
	m := Meta{Protocol: e.p, Start: start}
	if e.protocolOf != nil {
		if p := e.protocolOf(start.Target); p != "" {
			m.Protocol = p
		}
	}
	return m
}

func (e edge) Start(ctx context.Context, start schemas.SessionStart) (Recording, error) {
	s, err := e.r.Start(ctx, e.meta(start))
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}

func (e edge) Deny(ctx context.Context, start schemas.SessionStart, reason string) error {
	return e.r.Deny(ctx, e.meta(start), reason)
}
