package postgres

import (
	"bytes"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var pgStitchKinds = []string{"Query", "Parse", "Bind", "Describe", "Execute", "Sync", "DataRow", "RowDescription",
	"CommandComplete", "ReadyForQuery", "ErrorResponse", "ParseComplete", "BindComplete", "CopyData", "CopyInResponse",
	"CopyDone", "PortalSuspended", "EmptyQueryResponse", "FunctionCall", "Close", "NoData", "ParameterDescription"}

// FuzzStitchPostgres: any sequence of Postgres frames, whole or fragmented, with any
// payloads stitches without panic.
func FuzzStitchPostgres(f *testing.F) {
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte { b, _ := m.Encode(nil); return b }
	seed := bytes.Join([][]byte{
		append([]byte{0x01}, enc(&pgproto3.Parse{Name: "s", Query: "select $1"})...),
		append([]byte{0x02}, enc(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("x")}})...),
		append([]byte{0x04}, enc(&pgproto3.Execute{})...),
		append([]byte{0x05}, enc(&pgproto3.Sync{})...),
		append([]byte{0x2b}, enc(&pgproto3.ParseComplete{})...),
		append([]byte{0x28}, enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...),
		append([]byte{0x29}, enc(&pgproto3.ReadyForQuery{TxStatus: 'I'})...),
	}, []byte{0xA5})
	f.Add(seed)
	// A Bind whose value length is negative (not -1): pgproto3 panics decoding it.
	f.Add(append([]byte{0x02}, []byte("B\x00\x00\x00\x14\x00s\x00\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &Stitcher{}
		frames := sessiontest.FuzzFrames(data, schemas.Postgres, pgStitchKinds)
		for i := range frames {
			sessiontest.CheckCommands(t, p.Frame(&frames[i], protocol.Limits{}), int64(len(frames)))
			p.RowColumns()
		}
		if len(frames) > 0 {
			sessiontest.CheckCommands(t, p.Flush(&frames[len(frames)-1], "end"), int64(len(frames)))
		}
	})
}
