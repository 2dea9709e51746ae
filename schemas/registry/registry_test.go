package registry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/tapline/tapline/schemas"
)

func frame() schemas.Frame {
	return schemas.Frame{SessionID: "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", Seq: 7, TS: time.UnixMicro(1_700_000_000_000_000).UTC(),
		Direction: schemas.Client, Protocol: schemas.Postgres, Kind: "Query", Payload: []byte("Q\x00\x00\x00\x0dSELECT 1\x00"),
		Final: true, Hash: make([]byte, 32), PrevHash: make([]byte, 32), GatewayID: "gw-1"}
}

func open(t *testing.T, fake *srfake.Registry) *Registry {
	t.Helper()
	r, err := Open(Config{URLs: []string{fake.URL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func fake(t *testing.T, opts ...srfake.Option) *srfake.Registry {
	t.Helper()
	f := srfake.New(opts...)
	t.Cleanup(f.Close)
	return f
}

// The frames topic's values carry the registry's id, and a consumer that knows
// nothing of tapline but the registry decodes them, as Confluent's, Apicurio's and
// Redpanda's deserializers do.
func TestConsumerDecodesWithTheRegistry(t *testing.T) {
	ctx := context.Background()
	f := fake(t)
	codec, err := Codec(ctx, open(t, f), "tapline.frames", schemas.FrameCodec())
	if err != nil {
		t.Fatal(err)
	}
	fr := frame()
	v, err := codec.Encode(&fr)
	if err != nil {
		t.Fatal(err)
	}

	// The consumer: its own registry client and a generic Avro decoder.
	cl, err := sr.NewClient(sr.URLs(f.URL()))
	if err != nil {
		t.Fatal(err)
	}
	var hdr sr.ConfluentHeader
	id, body, err := hdr.DecodeID(v)
	if err != nil {
		t.Fatalf("not Confluent-framed: %v", err)
	}
	subjects, err := cl.SubjectsByID(ctx, id)
	if err != nil || len(subjects) != 1 || subjects[0] != "tapline.frames-value" {
		t.Errorf("id %d is registered under %v (%v), want [tapline.frames-value]", id, subjects, err)
	}
	s, err := cl.SchemaByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	generic, err := goavro.NewCodec(s.Schema)
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := generic.NativeFromBinary(body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("decode with the registry's schema: %v (%d bytes left)", err, len(rest))
	}
	m := native.(map[string]any)
	if m["session_id"] != fr.SessionID || m["seq"] != fr.Seq || m["kind"] != "Query" {
		t.Errorf("decoded %v", m)
	}
	back, err := codec.Decode(v)
	if err != nil || back.Seq != fr.Seq || back.SessionID != fr.SessionID {
		t.Errorf("tapline decode: %+v %v", back, err)
	}
}

// Every role registers at start; the registry hands out one id per schema.
func TestRegisterIsIdempotent(t *testing.T) {
	ctx := context.Background()
	r := open(t, fake(t))
	schema := schemas.FrameCodec().Schema()
	a, err := r.Register(ctx, "tapline.frames.raw", schema)
	if err != nil {
		t.Fatal(err)
	}
	b, err1 := r.Register(ctx, "tapline.frames.raw", schema)
	c, err2 := r.Register(ctx, "tapline.frames", schema)
	if err1 != nil || err2 != nil || a != b || a != c {
		t.Errorf("ids %d %d %d (%v %v), want one id", a, b, c, err1, err2)
	}
	d, err := r.Register(ctx, "tapline.commands", schemas.CommandCodec().Schema())
	if err != nil || d == a {
		t.Errorf("commands schema got id %d (%v), frames %d", d, err, a)
	}
}

// A reader in another process (nothing cached) resolves the writer's id; an id
// of a schema that is not a tapline version is refused, not misread.
func TestReaderResolvesIDs(t *testing.T) {
	ctx := context.Background()
	f := fake(t)
	w, err := Codec(ctx, open(t, f), "tapline.sessions", schemas.SessionCodec())
	if err != nil {
		t.Fatal(err)
	}
	s := schemas.Session{SessionID: "s1", Protocol: schemas.SSH, Status: schemas.StatusActive, StartedAt: time.UnixMicro(1).UTC(), LastSeq: 3, Version: 2}
	v, err := w.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	reader := Reader(ctx, open(t, f), schemas.SessionCodec())
	got, err := reader.Decode(v)
	if err != nil || got.SessionID != "s1" || got.LastSeq != 3 {
		t.Fatalf("decode: %+v %v", got, err)
	}
	if _, err := schemas.SessionCodec().Decode(v); !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Errorf("a codec without the registry decoded a registry id: %v", err)
	}

	other, _, err := f.RegisterSchema("other-value", sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{uint32(other), 999} {
		forged := binary.BigEndian.AppendUint32([]byte{0}, id)
		forged = append(forged, v[5:]...)
		if _, err := reader.Decode(forged); !errors.Is(err, schemas.ErrUnknownSchema) {
			t.Errorf("id %d: err %v, want ErrUnknownSchema", id, err)
		}
	}
}

// A registry that refuses the schema (incompatible with its compatibility rule)
// stops the role at start with the subject named.
func TestRegistryRefusal(t *testing.T) {
	f := fake(t)
	f.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/subjects/") {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(sr.ResponseError{ErrorCode: 409, Message: "Schema being registered is incompatible with an earlier schema"})
		return true
	})
	_, err := Codec(context.Background(), open(t, f), "tapline.commands", schemas.CommandCodec())
	if err == nil || !strings.Contains(err.Error(), "tapline.commands-value") || !strings.Contains(err.Error(), "incompatible") {
		t.Fatalf("err = %v, want the subject and the registry's reason", err)
	}
}

func TestOpenConfig(t *testing.T) {
	env := func(k string) (string, bool) {
		return map[string]string{"SR_PASS": "p", "SR_TOKEN": "t"}[k], k == "SR_PASS" || k == "SR_TOKEN"
	}
	for _, c := range []Config{{}, {URLs: []string{"http://x"}, Username: "u", PasswordEnv: "NOPE"}, {URLs: []string{"http://x"}, BearerTokenEnv: "NOPE"}} {
		if _, err := Open(c, env); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	f := fake(t, srfake.WithAuth("Bearer t"))
	r, err := Open(Config{URLs: []string{f.URL()}, BearerTokenEnv: "SR_TOKEN"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(context.Background(), "t", schemas.FrameCodec().Schema()); err != nil {
		t.Errorf("with the bearer token: %v", err)
	}
}
