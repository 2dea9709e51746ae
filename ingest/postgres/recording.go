package postgres

import (
	"context"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// Recorder is what the proxy needs from ingest/recorder: start a recorded session,
// or record a denial. RecorderFor adapts a *recorder.Recorder.
type Recorder interface {
	Start(ctx context.Context, start schemas.SessionStart) (Session, error)
	Deny(ctx context.Context, start schemas.SessionStart, reason string) error
}

// Session is one recorded session; *recorder.Session satisfies it.
//
// Client (or ClientBatch, for messages read together) must have returned nil
// before a client message is forwarded: in strict mode it returns once Kafka
// acknowledged the frames. Server is asynchronous.
// Failed is closed when recording broke; the proxy then ends the connection.
type Session interface {
	ID() string
	Client(ctx context.Context, kind string, channel int64, payload []byte) error
	ClientBatch(ctx context.Context, msgs []recorder.Message) error
	Server(kind string, channel int64, payload []byte) error
	End(ctx context.Context, reason string) error
	Failed() <-chan struct{}
	Err() error
}
