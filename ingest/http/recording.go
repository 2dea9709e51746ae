package httpproxy

import (
	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// Recorder and Session are the recorder's edge interfaces, under the names the
// proxy uses.
type (
	Recorder = recorder.Sessions
	Session  = recorder.Recording
)

// Recording adapts r to the proxy's Recorder.
func Recording(r *recorder.Recorder) Recorder { return RecordingBy(r, nil) }

// RecordingBy is Recording for targets some of which are recorded under a
// protocol built on HTTP (the Kubernetes API): protocolOf names it by target,
// "" (or a nil protocolOf) meaning HTTP.
func RecordingBy(r *recorder.Recorder, protocolOf func(target string) schemas.Protocol) Recorder {
	return recorder.For(r, schemas.HTTP, protocolOf)
}
