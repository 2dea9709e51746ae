// Package storetest holds tests every clickhouse.Store implementation must pass, and
// the fixtures they use (sealed frames, commands and session summaries).
package storetest

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/tapline/tapline/schemas"
)

// processorKey signs the fixtures' masked frames, so the processor_sig column is
// written and read back like any other.
var processorKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// Recording is one synthetic session: sealed frames, commands and its summaries.
type Recording struct {
	ID       string
	Frames   []schemas.Frame
	Commands []schemas.Command
	Sessions []schemas.Session // increasing Version; the last is the latest
}

// NewRecording builds a Postgres session of n frames (n >= 3) started at start:
// session.start, alternating Query/DataRow frames with binary payloads, session.end.
// Payloads contain every byte value, including NUL, tab, newline, quote and backslash.
func NewRecording(subject, target string, start time.Time, n int) Recording {
	return NewRecordingSized(subject, target, start, n, 256)
}

// NewRecordingSized is NewRecording with DataRow payloads of size bytes.
func NewRecordingSized(subject, target string, start time.Time, n, size int) Recording {
	id := uuid.Must(uuid.NewV7()).String()
	r := Recording{ID: id}
	prev := schemas.ZeroHash
	var sealer schemas.Sealer
	st := &schemas.SessionStart{Issuer: "https://issuer.test", Subject: subject, Email: subject + "@example.com",
		Groups: []string{"dba", "ops"}, Target: target, TargetAddr: "127.0.0.1:5432", ClientAddr: "127.0.0.1:40000",
		Params: map[string]string{"user": subject, "database": "app"}}
	for seq := 0; seq < n; seq++ {
		f := schemas.Frame{SessionID: id, Seq: int64(seq), TS: start.Add(time.Duration(seq) * time.Millisecond).UTC(),
			Protocol: schemas.Postgres, GatewayID: "gw-test", Final: true}
		switch {
		case seq == 0:
			f.Direction, f.Kind, f.Start = schemas.Server, schemas.KindSessionStart, st
			f.Payload = []byte(fmt.Sprintf(`{"start":{"subject":%q}}`, subject))
		case seq == n-1:
			f.Direction, f.Kind = schemas.Server, schemas.KindSessionEnd
			f.End = &schemas.SessionEnd{Reason: "client closed", LastSeq: int64(n - 2), Frames: int64(n), FinalHash: prev}
			f.Payload = []byte(`{"reason":"client closed"}`)
		case seq%2 == 1:
			f.Direction, f.Kind = schemas.Client, "Query"
			f.Payload = append([]byte("Q\x00\x00\x00\x10select '\t\\\n' -- "), byte(seq), 0xff, 0xfe)
			f.Masks = map[string]int64{"email": 1}
			r.Commands = append(r.Commands, schemas.Command{SessionID: id, CommandSeq: int64(seq), SeqEnd: int64(seq + 1),
				Protocol: schemas.Postgres, Target: target, Subject: subject, Kind: "query",
				Text:   fmt.Sprintf("SELECT * FROM Accounts WHERE id = %d AND note = 'it''s \\ fine'", seq),
				Params: []string{"a'b", "c\\d", ""}, StartedAt: f.TS, EndedAt: f.TS.Add(time.Millisecond),
				Status: "ok", Rows: int64(seq), Masks: map[string]int64{"email": 1}})
		default:
			f.Direction, f.Kind = schemas.Server, "DataRow"
			f.Payload = make([]byte, size)
			for b := range f.Payload {
				f.Payload[b] = byte(b)
			}
		}
		if err := sealer.Seal(&f, prev); err != nil {
			panic(err)
		}
		if f.Masks != nil {
			if err := schemas.SignMasked(processorKey, &f); err != nil {
				panic(err)
			}
		}
		prev = f.Hash
		r.Frames = append(r.Frames, f)
	}
	base := schemas.Session{SessionID: id, Protocol: schemas.Postgres, Target: target, GatewayID: "gw-test",
		Issuer: st.Issuer, Subject: subject, Email: st.Email, Groups: st.Groups, ClientAddr: st.ClientAddr,
		StartedAt: start.UTC(), Status: schemas.StatusActive, LastSeq: -1, Version: 1}
	ended := base
	end := start.Add(time.Duration(n) * time.Millisecond).UTC()
	ok := true
	ended.EndedAt, ended.Status, ended.EndReason, ended.Version = &end, schemas.StatusEnded, "client closed", 2
	ended.Frames, ended.Commands, ended.LastSeq, ended.FinalHash, ended.SignatureOK = int64(n), int64(len(r.Commands)), int64(n-1), prev, &ok
	r.Sessions = []schemas.Session{base, ended}
	return r
}
