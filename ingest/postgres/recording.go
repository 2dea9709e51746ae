package postgres

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

// RecorderFor adapts a *recorder.Recorder to Recorder, tagging sessions as Postgres.
func RecorderFor(r *recorder.Recorder) Recorder { return recorder.For(r, schemas.Postgres, nil) }
