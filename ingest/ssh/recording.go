package sshproxy

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

// Recording adapts the frame recorder to the proxy's Recorder.
func Recording(r *recorder.Recorder) Recorder { return recorder.For(r, schemas.SSH, nil) }
