package sshproxy

import (
	"context"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// Recorder is what the proxy needs from the frame recorder: open a recorded session
// for an admitted connection, or record a refusal. Adapt a *recorder.Recorder with
// Recording.
type Recorder interface {
	// Start writes session.start and returns once Kafka has it; an error means the
	// session cannot be recorded and must be refused.
	Start(ctx context.Context, start schemas.SessionStart) (Session, error)
	// Deny records a refused connection (session.denied, then session.end).
	Deny(ctx context.Context, start schemas.SessionStart, reason string) error
}

// Session is one recorded SSH connection. *recorder.Session satisfies it.
type Session interface {
	ID() string
	// Client records an agent→target frame. In strict mode it returns only after
	// Kafka acknowledged it; on error the frame must not be forwarded.
	Client(ctx context.Context, kind string, channel int64, payload []byte) error
	// Server records a target→agent (or gateway-generated) frame asynchronously.
	Server(kind string, channel int64, payload []byte) error
	End(ctx context.Context, reason string) error
	// Failed is closed when recording failed; the connection must then be ended.
	Failed() <-chan struct{}
	Err() error
}

// Recording adapts the frame recorder to the proxy's Recorder.
func Recording(r *recorder.Recorder) Recorder { return recording{r} }

type recording struct{ r *recorder.Recorder }

func (rc recording) Start(ctx context.Context, start schemas.SessionStart) (Session, error) {
	s, err := rc.r.Start(ctx, recorder.Meta{Protocol: schemas.SSH, Start: start})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (rc recording) Deny(ctx context.Context, start schemas.SessionStart, reason string) error {
	return rc.r.Deny(ctx, recorder.Meta{Protocol: schemas.SSH, Start: start}, reason)
}

var _ Session = (*recorder.Session)(nil)
