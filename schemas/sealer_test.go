package schemas

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A Sealer must produce what Seal does: the same digest and hash for the same
// salt, fresh salts for every frame, a chain CheckLink accepts, and no slice
// of one frame that a later frame overwrites. Two sessions alternate through
// one Sealer to cover the cached session id, and more frames than one block of
// random bytes holds pass through it.
func TestSealerMatchesSeal(t *testing.T) {
	ids := []string{uuid.NewString(), uuid.NewString()}
	var s Sealer
	prev := map[string][]byte{ids[0]: ZeroHash, ids[1]: ZeroHash}
	var sealed []Frame
	salts := map[string]bool{}
	n := 3 * sealerRandom / SaltSize
	for i := range n {
		id := ids[i%2]
		f := Frame{SessionID: id, Seq: int64(i / 2), TS: time.UnixMicro(int64(i) * 1000).UTC(),
			Direction: []Direction{Client, Server}[i%3%2], Protocol: Postgres, Channel: int64(i % 5),
			Kind: "DataRow", Payload: bytes.Repeat([]byte{byte(i)}, i%70), Final: i%4 != 0, GatewayID: "gw-1"}
		if err := s.Seal(&f, prev[id]); err != nil {
			t.Fatal(err)
		}
		if salts[string(f.PayloadSalt)] || len(f.PayloadSalt) != SaltSize {
			t.Fatalf("frame %d: salt %x repeated or of the wrong size", i, f.PayloadSalt)
		}
		salts[string(f.PayloadSalt)] = true

		// Seal's construction from the same salt gives the same digest and hash.
		want := f
		want.PayloadDigest = PayloadDigest(f.PayloadSalt, f.Payload)
		want.PrevHash = append([]byte(nil), prev[id]...)
		h, err := ChainHash(&want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.PayloadDigest, want.PayloadDigest) || !bytes.Equal(f.PrevHash, want.PrevHash) || !bytes.Equal(f.Hash, h) {
			t.Fatalf("frame %d differs from Seal's construction", i)
		}
		prev[id] = f.Hash
		sealed = append(sealed, f)
	}
	// Every frame still verifies after all the others were sealed.
	prev = map[string][]byte{ids[0]: ZeroHash, ids[1]: ZeroHash}
	for i := range sealed {
		f := &sealed[i]
		if err := CheckLink(f, prev[f.SessionID]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		prev[f.SessionID] = f.Hash
	}
}

func TestSealerRefusesWhatSealRefuses(t *testing.T) {
	var s Sealer
	for name, f := range map[string]Frame{
		"session id": {SessionID: "not-a-uuid", Direction: Client, Protocol: SSH},
		"direction":  {SessionID: uuid.NewString(), Direction: "sideways", Protocol: SSH},
		"protocol":   {SessionID: uuid.NewString(), Direction: Client, Protocol: "gopher"},
	} {
		g := f
		if errS, errF := s.Seal(&f, ZeroHash), Seal(&g, ZeroHash); errS == nil || errF == nil {
			t.Errorf("%s: Sealer %v, Seal %v", name, errS, errF)
		}
	}
}

// BenchmarkSeal compares sealing one small frame with Seal and with a Sealer.
func BenchmarkSeal(b *testing.B) {
	f := Frame{SessionID: uuid.NewString(), TS: time.Now(), Direction: Server, Protocol: Postgres,
		Kind: "DataRow", Payload: make([]byte, 64), Final: true, GatewayID: "gw-1"}
	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Seal(&f, ZeroHash); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Sealer", func(b *testing.B) {
		var s Sealer
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Seal(&f, ZeroHash); err != nil {
				b.Fatal(err)
			}
		}
	})
}
