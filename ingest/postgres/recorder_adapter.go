package postgres

import (
	"context"

	"github.com/tapline/tapline/ingest/recorder"
	"github.com/tapline/tapline/schemas"
)

// RecorderFor adapts a *recorder.Recorder to Recorder, tagging sessions as Postgres.
func RecorderFor(r *recorder.Recorder) Recorder { return pgRecorder{r} }

type pgRecorder struct{ r *recorder.Recorder }

func (p pgRecorder) Start(ctx context.Context, start schemas.SessionStart) (Session, error) {
	s, err := p.r.Start(ctx, recorder.Meta{Protocol: schemas.Postgres, Start: start})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}

func (p pgRecorder) Deny(ctx context.Context, start schemas.SessionStart, reason string) error {
	return p.r.Deny(ctx, recorder.Meta{Protocol: schemas.Postgres, Start: start}, reason)
}
