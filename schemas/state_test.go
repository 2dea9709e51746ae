package schemas

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestStateRoundTripAndLegacyJSON(t *testing.T) {
	for _, in := range []ProcessorState{
		{Checkpoint: &StateCheckpoint{Topic: TopicFramesRaw, Partition: 3, Next: 42}},
		{SessionFormat: SessionStateFormat, Session: []byte(`{"summary":{}}`)},
	} {
		b, err := StateCodec().Encode(&in)
		if err != nil {
			t.Fatal(err)
		}
		key := "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60"
		if in.Checkpoint != nil {
			key = "checkpoint"
		}
		out, err := DecodeState(key, b)
		if err != nil || !bytes.Equal(out.Session, in.Session) || out.SessionFormat != in.SessionFormat ||
			(in.Checkpoint != nil && (out.Checkpoint == nil || *out.Checkpoint != *in.Checkpoint)) {
			t.Errorf("round trip of %+v: %+v, %v", in, out, err)
		}
	}

	// State topics written before the schema hold JSON; an upgraded processor reads them.
	c, err := DecodeState("checkpoint", []byte(`{"topic":"tapline.frames.raw","partition":2,"next":7}`))
	if err != nil || c.Checkpoint == nil || *c.Checkpoint != (StateCheckpoint{Topic: "tapline.frames.raw", Partition: 2, Next: 7}) {
		t.Errorf("legacy checkpoint: %+v, %v", c, err)
	}
	s, err := DecodeState("0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60", []byte(`{"summary":{"session_id":"x"}}`))
	if err != nil || s.SessionFormat != 1 || string(s.Session) != `{"summary":{"session_id":"x"}}` {
		t.Errorf("legacy session: %+v, %v", s, err)
	}

	// A format from a newer build is refused, not misread.
	b, _ := StateCodec().Encode(&ProcessorState{SessionFormat: SessionStateFormat + 1, Session: []byte(`{}`)})
	if _, err := DecodeState("id", b); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("newer session format: %v, want ErrUnknownSchema", err)
	}
	if _, err := DecodeState("id", []byte{0xC3, 0x01, 1, 2}); err == nil {
		t.Error("garbage decoded")
	}
}

// State values come back from Kafka, where anyone with write access to the topic
// could have put anything: decoding never panics.
func FuzzDecodeState(f *testing.F) {
	b, _ := StateCodec().Encode(&ProcessorState{SessionFormat: 1, Session: []byte(`{}`)})
	f.Add("id", b)
	f.Add("checkpoint", []byte(`{"topic":"t","partition":1,"next":2}`))
	f.Add("checkpoint", []byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		s, err := DecodeState(key, value)
		if err == nil && s.Checkpoint == nil && s.Session == nil {
			t.Fatalf("decoded %q to an empty state without an error", value)
		}
	})
}

// The direct encoder writes what goavro writes for every shape of state value.
func TestStateEncodeMatchesGoavro(t *testing.T) {
	for _, s := range []ProcessorState{
		{SessionFormat: SessionStateFormat, Session: []byte(`{"summary":{}}`)},
		{SessionFormat: SessionStateFormat, Session: []byte{}},
		{SessionFormat: SessionStateFormat},
		{SessionFormat: 1, Checkpoint: &StateCheckpoint{Topic: "tapline.frames.raw", Partition: 3, Next: 1 << 40}},
		{SessionFormat: -7, Checkpoint: &StateCheckpoint{Partition: -1, Next: -1}, Session: []byte("x")},
	} {
		got, err := StateCodec().Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := StateCodec().current.SingleFromNative(nil, stateToNative(&s))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: differs from goavro at byte %d\n got % x\nwant % x", s, firstDiff(got, want), got, want)
		}
		back, err := StateCodec().Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Checkpoint, s.Checkpoint) || back.SessionFormat != s.SessionFormat || !bytes.Equal(back.Session, s.Session) {
			t.Fatalf("round trip: got %+v, want %+v", back, s)
		}
	}
}
