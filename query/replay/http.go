package replay

import (
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all" // every protocol's replay
)

// writeRegistered replays a session through its protocol package when the
// protocol is a registered protocol.Replayer; ok is false otherwise.
func writeRegistered(w io.Writer, p schemas.Protocol, f Format, frames iter.Seq2[schemas.Frame, error], opt Options, flush func()) (ok bool, err error) {
	r, err := protocol.Of[protocol.Replayer](p)
	if err != nil {
		return false, nil
	}
	return true, r.Replay(w, string(f), frames, protocol.ReplayOptions{MaxRows: opt.MaxRows, MaxCellBytes: opt.MaxCellBytes, Channel: opt.Channel}, flush)
}
