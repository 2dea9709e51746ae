package schemas

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

// goavroCommand is how Decode read a current-schema command before commands were
// decoded directly.
func goavroCommand(b []byte) (Command, error) { return goavroOf(CommandCodec(), b) }

func randomCommand(r *rand.Rand) Command {
	c := Command{
		SessionID: uuid.NewString(), CommandSeq: randLong(r), SeqEnd: randLong(r),
		Protocol: protocolSymbols[r.IntN(len(protocolSymbols))],
		Target:   randString(r, 12), Subject: randString(r, 12), Channel: randLong(r),
		Kind: randString(r, 12), Text: randString(r, 200), StartedAt: randTime(r), EndedAt: randTime(r),
		Status: randString(r, 10), Error: randString(r, 40), Rows: randLong(r), Masks: randMasks(r),
	}
	for range r.IntN(4) {
		c.Params = append(c.Params, randString(r, 30))
	}
	if r.IntN(2) == 0 {
		v := int32(randLong(r))
		c.ExitStatus = &v
	}
	return c
}

// The direct encoder writes what goavro writes (maps in key order), and both
// decoders read it back to the same command.
func TestCommandBinaryMatchesGoavro(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range 300 {
		c := randomCommand(r)
		got, err := CommandCodec().Encode(&c)
		if err != nil {
			t.Fatalf("seed %d command %d: %v", seed, i, err)
		}
		want, err := CommandCodec().current.SingleFromNative(nil, commandToNative(&c))
		if err != nil {
			t.Fatalf("seed %d command %d: goavro: %v", seed, i, err)
		}
		if len(c.Masks) <= 1 && !bytes.Equal(got, want) {
			t.Fatalf("seed %d command %d: differs from goavro at byte %d\n got % x\nwant % x", seed, i, firstDiff(got, want), head(got), head(want))
		}
		if len(got) != len(want) {
			t.Fatalf("seed %d command %d: %d bytes, goavro %d", seed, i, len(got), len(want))
		}
		direct, err := CommandCodec().Decode(got)
		if err != nil {
			t.Fatalf("seed %d command %d: decode: %v", seed, i, err)
		}
		generic, err := goavroCommand(got)
		if err != nil {
			t.Fatalf("seed %d command %d: goavro decode: %v", seed, i, err)
		}
		if !reflect.DeepEqual(direct, generic) {
			t.Fatalf("seed %d command %d: decoders differ\n direct %+v\n goavro %+v", seed, i, direct, generic)
		}
		if direct.Text != c.Text || direct.SessionID != c.SessionID || !reflect.DeepEqual(direct.ExitStatus, c.ExitStatus) {
			t.Fatalf("seed %d command %d: round trip lost fields\n got %+v\nwant %+v", seed, i, direct, c)
		}
	}
}

func TestCommandEncodeRejectsUnknownProtocol(t *testing.T) {
	c := Command{SessionID: uuid.NewString(), Protocol: "FTP"}
	if _, err := CommandCodec().Encode(&c); err == nil {
		t.Fatal("a protocol outside the schema's symbols was encoded")
	}
}

// Every cut of a valid value, and every byte changed, is refused or decoded as
// goavro decodes it.
func TestCommandDecodeDamagedValues(t *testing.T) {
	v := int32(2)
	c := Command{SessionID: uuid.NewString(), CommandSeq: 3, SeqEnd: 9, Protocol: SSH, Kind: "exec",
		Text: "tar czf - /etc", Params: []string{"a"}, StartedAt: time.Now(), EndedAt: time.Now(),
		Status: "error", ExitStatus: &v, Masks: map[string]int64{"email": 1}}
	good, err := CommandCodec().Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	for n := 10; n < len(good); n++ {
		if _, err := CommandCodec().Decode(good[:n]); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decoded", n, len(good))
		}
	}
	for i := 10; i < len(good); i++ {
		for _, x := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] = x
			checkCommandAgainstGoavro(t, b)
		}
	}
}

func checkCommandAgainstGoavro(t *testing.T, b []byte) {
	t.Helper()
	checkDirectDecoder(t, CommandCodec(), b)
}

func FuzzCommandDecodeMatchesGoavro(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 3))
	var good []byte
	for range 8 {
		c := randomCommand(r)
		b, _ := CommandCodec().Encode(&c)
		good = b
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 10 || !bytes.Equal(b[:10], good[:10]) {
			b = append(bytes.Clone(good[:10]), b...) // the body is what is fuzzed
		}
		checkCommandAgainstGoavro(t, b)
	})
}

func BenchmarkCommandDecode(b *testing.B) {
	c := randomCommand(rand.New(rand.NewPCG(1, 3)))
	v, err := CommandCodec().Encode(&c)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		decode func([]byte) (Command, error)
	}{{"direct", CommandCodec().Decode}, {"goavro", goavroCommand}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.decode(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
