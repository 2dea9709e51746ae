// Integration: /verify over the sink's Store on the ClickHouse server of the test
// services (Debian's 18.16, legacy schema): a server that predates query
// parameters and the DateTime64 and Map types the chain hash and the masked
// frames' signatures depend on.

package api

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
)

func insert(t *testing.T, s clickhouse.Store, b *clickhouse.Batch) {
	t.Helper()
	if err := s.Insert(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func pgMsg(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	return sessiontest.Must(m.Encode(nil))
}

func legacyServerStore(t *testing.T) clickhouse.Store {
	t.Helper()
	sc := clickhouse.ServerConfig{Addr: []string{testenv.ClickHouse(t).Addr}, Database: fmt.Sprintf("tapline_api_%d", rand.Uint64())}
	ctx := context.Background()
	s, err := clickhouse.OpenServer(ctx, sc, clickhouse.Config{Schema: clickhouse.SchemaLegacy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := clickhouse.DialServer(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+sc.Database, nil)
		conn.Close()
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// A signed session with a masked, processor-signed frame verifies ok and
// trusted when stored on 18.16, and a payload replaced there fails.
func TestVerifyOverLegacyServer(t *testing.T) {
	store := legacyServerStore(t)
	_, gw, _ := ed25519.GenerateKey(nil)
	_, proc, _ := ed25519.GenerateKey(nil)
	e := newEnvStore(t, Config{TrustedGatewayKeys: []ed25519.PublicKey{gw.Public().(ed25519.PublicKey)},
		TrustedProcessorKeys: []ed25519.PublicKey{proc.Public().(ed25519.PublicKey)}}, store)
	b := sessiontest.New(schemas.Postgres, schemas.SessionStart{Issuer: e.iss.URL(), Subject: "o'brien\\", Target: "app"})
	b.Key = gw
	// Sub-second timestamps: the chain hash covers them to the microsecond.
	b.Step(1234567*time.Nanosecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT 'bob@example.com'"}))
	b.Step(777*time.Microsecond).Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	b.Step(3*time.Millisecond).Client("Query", 0, pgMsg(&pgproto3.Query{String: "SELECT 2"}))
	b.Server("ReadyForQuery", 0, pgMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}))
	b.End("client closed")
	masked := &b.Frames[1]
	masked.Payload = pgMsg(&pgproto3.Query{String: "SELECT '[masked:email]'"})
	masked.PayloadSalt, masked.Masks = nil, map[string]int64{"email": 1, "aws_key": 0}
	if err := schemas.SignMasked(proc, masked); err != nil {
		t.Fatal(err)
	}
	insert(t, store, &clickhouse.Batch{Frames: b.Frames, Sessions: []schemas.Session{memstore.Summary(b, schemas.StatusEnded)}})

	tok := e.token("o'brien\\")
	var rep verify.Report
	e.getJSON(tok, "/api/v1/sessions/"+b.ID+"/verify", &rep)
	if !rep.OK || rep.Status != verify.StatusOK || rep.Signature.Status != verify.SigTrusted ||
		rep.Masked != 1 || rep.MaskedSigs.Status != verify.MaskedTrusted || rep.Frames != int64(len(b.Frames)) {
		t.Fatalf("session as recorded, stored on 18.16: %+v", rep)
	}

	forged := b.Frames[3]
	forged.Payload = pgMsg(&pgproto3.Query{String: "SELECT 3"})
	insert(t, store, &clickhouse.Batch{Frames: []schemas.Frame{forged}})
	// The replacing row collapses with FINAL, as on a current server.
	e.getJSON(tok, "/api/v1/sessions/"+b.ID+"/verify", &rep)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Seq != 3 {
		t.Errorf("payload replaced on 18.16: %+v", rep)
	}
}
