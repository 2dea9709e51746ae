package httpproxy

import (
	"context"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// Recorder is what the proxy needs from ingest/recorder; Recording adapts a
// *recorder.Recorder.
type Recorder interface {
	Start(ctx context.Context, start schemas.SessionStart) (Session, error)
	Deny(ctx context.Context, start schemas.SessionStart, reason string) error
}

// Session is one recorded session; *recorder.Session satisfies it. Client
// (or ClientBatch) must have returned nil before the bytes go upstream: in
// strict mode it returns once Kafka acknowledged them. Server is asynchronous.
type Session interface {
	ID() string
	Client(ctx context.Context, kind string, channel int64, payload []byte) error
	ClientBatch(ctx context.Context, msgs []recorder.Message) error
	Server(kind string, channel int64, payload []byte) error
	End(ctx context.Context, reason string) error
	Failed() <-chan struct{}
	Err() error
}

// Recording adapts r to the proxy's Recorder.
func Recording(r *recorder.Recorder) Recorder { return RecordingBy(r, nil) }

// RecordingBy is Recording for targets some of which are recorded under a
// protocol built on HTTP (the Kubernetes API): protocolOf names it by target,
// "" (or a nil protocolOf) meaning HTTP.
func RecordingBy(r *recorder.Recorder, protocolOf func(target string) schemas.Protocol) Recorder {
	return recording{r, protocolOf}
}

type recording struct {
	r          *recorder.Recorder
	protocolOf func(string) schemas.Protocol
}

func (rc recording) protocol(target string) schemas.Protocol {
	if rc.protocolOf != nil {
		if p := rc.protocolOf(target); p != "" {
			return p
		}
	}
	return schemas.HTTP
}

func (rc recording) Start(ctx context.Context, start schemas.SessionStart) (Session, error) {
	s, err := rc.r.Start(ctx, recorder.Meta{Protocol: rc.protocol(start.Target), Start: start})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}

func (rc recording) Deny(ctx context.Context, start schemas.SessionStart, reason string) error {
	return rc.r.Deny(ctx, recorder.Meta{Protocol: rc.protocol(start.Target), Start: start}, reason)
}

var _ Session = (*recorder.Session)(nil)

// recordsHTTP reports whether target is recorded as plain HTTP, whose
// protocol package reads the complete kinds; a protocol built on HTTP (the
// Kubernetes API masks body frames itself) gets the split kinds.
func recordsHTTP(r Recorder, target string) bool {
	p, ok := r.(interface{ protocol(string) schemas.Protocol })
	return !ok || p.protocol(target) == schemas.HTTP
}
