package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ProcessorState is a value of the processor state topic (state.avsc): a
// partition's checkpoint or one session's saved state.
type ProcessorState struct {
	Checkpoint *StateCheckpoint
	// SessionFormat versions Session's JSON encoding (SessionStateFormat today).
	SessionFormat int32
	Session       []byte
}

// StateCheckpoint is the raw offset a state partition is at.
type StateCheckpoint struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Next      int64  `json:"next"`
}

// SessionStateFormat is the version of the session state encoding this build
// writes. Bump it (and convert older versions on restore) when the processors'
// per-session state changes incompatibly.
//
//	1: the first encoding
//	2: SSH sessions keep their stitching and masking state in one conversation
//	   ("conv"); format 1 ("ssh" and "mask"."ssh") is converted on restore
//	3: Postgres sessions too ("conv"); format 1 and 2 ("pg" and "mask"."walk") are
//	   converted on restore
//	4: a session may hold frames back ("held": frames whose last bytes may begin
//	   a secret, not yet emitted); older formats have none and load unchanged, and
//	   a format-3 processor must not read format 4 (it would drop held frames)
const SessionStateFormat = 4

// The processors write a state value per changed session per transaction, so
// values are encoded directly (as frames are, frame_encode.go); they are read only
// when a partition's state loads, through goavro. Any change to state.avsc must be
// mirrored in appendState.
var stateCodec = newCodec("state", stateToNative, stateFromNative).withDirect(appendState)

// appendState returns header followed by s's Avro binary body.
func appendState(header []byte, s *ProcessorState) ([]byte, error) {
	buf := make([]byte, 0, len(header)+48+len(s.Session))
	buf = append(buf, header...)
	if c := s.Checkpoint; c == nil {
		buf = appendLong(buf, unionNull)
	} else {
		buf = appendLong(buf, unionValue)
		buf = appendString(buf, c.Topic)
		buf = appendInt(buf, c.Partition)
		buf = appendLong(buf, c.Next)
	}
	buf = appendInt(buf, s.SessionFormat)
	if s.Session == nil {
		return appendLong(buf, unionNull), nil
	}
	return appendBytes(appendLong(buf, unionValue), s.Session), nil
}

// StateCodec returns the codec for tapline.processor.state values.
func StateCodec() *Codec[ProcessorState] { return stateCodec }

func stateToNative(s *ProcessorState) map[string]any {
	m := map[string]any{"checkpoint": nil, "session_format": s.SessionFormat, "session": nil}
	if c := s.Checkpoint; c != nil {
		m["checkpoint"] = map[string]any{"dev.tapline.v1.StateCheckpoint": map[string]any{
			"topic": c.Topic, "partition": c.Partition, "next": c.Next}}
	}
	if s.Session != nil {
		m["session"] = map[string]any{"bytes": s.Session}
	}
	return m
}

func stateFromNative(m map[string]any) (ProcessorState, error) {
	r := reader{m: m}
	s := ProcessorState{SessionFormat: r.int("session_format")}
	if c, ok := r.union("checkpoint", "dev.tapline.v1.StateCheckpoint").(map[string]any); ok {
		cr := reader{m: c}
		s.Checkpoint = &StateCheckpoint{Topic: cr.str("topic"), Partition: cr.int("partition"), Next: cr.long("next")}
		if cr.err != nil {
			return s, cr.err
		}
	}
	if b, ok := r.union("session", "bytes").([]byte); ok {
		s.Session = b
	}
	return s, r.err
}

// DecodeState reads a state value. Values written before the state topic had a
// schema are JSON (a checkpoint object for the key "checkpoint", the session's
// state otherwise) and read as session format 1.
func DecodeState(key string, value []byte) (ProcessorState, error) {
	if len(value) > 0 && value[0] == '{' {
		if key != "checkpoint" {
			return ProcessorState{SessionFormat: 1, Session: value}, nil
		}
		var c StateCheckpoint
		if err := json.Unmarshal(value, &c); err != nil {
			return ProcessorState{}, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
		}
		return ProcessorState{Checkpoint: &c}, nil
	}
	s, err := stateCodec.Decode(value)
	if err != nil {
		return s, err
	}
	if s.Checkpoint == nil && s.SessionFormat > SessionStateFormat {
		return s, fmt.Errorf("%w: session state format %d is newer than this build's %d: upgrade the processors",
			ErrUnknownSchema, s.SessionFormat, SessionStateFormat)
	}
	if s.Checkpoint == nil && s.Session == nil {
		return s, errors.New("state value holds neither a checkpoint nor a session")
	}
	return s, nil
}
