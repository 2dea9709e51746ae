package ssh

import (
	"fmt"
	"iter"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/message"
	"github.com/tapline/tapline/schemas/protocol"
)

// Event is one entry of an SSH session's replay.
type Event struct {
	// Type is one of session.start, session.denied, session.end, open, request,
	// global, output, input, eof, close, note.
	Type    string    `json:"type"`
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"ts"`
	Channel int64     `json:"channel"`
	// Stream is stdout or stderr for output, stdin for input.
	Stream string `json:"stream,omitempty"`
	// Data is the bytes as recorded; encoded to JSON, invalid UTF-8 becomes U+FFFD
	// (the frames endpoint has the exact bytes).
	Data       string                `json:"data,omitempty"`
	Request    string                `json:"request,omitempty"` // pty-req, shell, exec, window-change, exit-status, ...
	Command    string                `json:"command,omitempty"` // exec command, subsystem name, signal name
	Term       string                `json:"term,omitempty"`
	Cols       uint32                `json:"cols,omitempty"`
	Rows       uint32                `json:"rows,omitempty"`
	Env        string                `json:"env,omitempty"` // name=value of an env request
	ExitStatus *uint32               `json:"exit_status,omitempty"`
	Start      *schemas.SessionStart `json:"start,omitempty"`
	End        *message.SessionEnd   `json:"end,omitempty"`
	Message    string                `json:"message,omitempty"`
}

// Request payload layouts (RFC 4254 section 6).
type (
	ptyReq struct {
		Term                 string
		Cols, Rows, WPx, HPx uint32
		Modes                string
	}
	windowChange  struct{ Cols, Rows, WPx, HPx uint32 }
	stringReq     struct{ Value string }
	envReq        struct{ Name, Value string }
	reqExitStatus struct{ Status uint32 }
	exitSignal    struct {
		Signal     string
		CoreDumped bool
		Message    string
		Lang       string
	}
)

// Events turns an SSH session's frames into replay events.
func Events(frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions) iter.Seq2[Event, error] {

	return func(yield func(Event, error) bool) {
		for m, err := range message.Reassemble(frames, opt.MaxMessageBytes) {
			if err != nil {
				yield(Event{}, err)
				return
			}
			if m.Note != "" && !yield(Event{Type: "note", Seq: m.Seq, Time: m.TS, Channel: m.Channel, Message: m.Note}, nil) {
				return
			}
			if m.Withheld {
				note := fmt.Sprintf("%s at seq %d: payload withheld (the processors failed on it; see its processing_failed alert)", m.Kind, m.Seq)
				if !yield(Event{Type: "note", Seq: m.Seq, Time: m.TS, Channel: m.Channel, Message: note}, nil) {
					return
				}
				continue
			}
			ev, ok := sshEvent(&m)
			if ok && !yield(ev, nil) {
				return
			}
		}
	}
}

func sshEvent(m *message.Message) (Event, bool) {
	ev := Event{Seq: m.Seq, Time: m.TS, Channel: m.Channel}
	switch {
	case m.Kind == schemas.KindSessionStart:
		ev.Type, ev.Start = "session.start", m.Start
	case m.Kind == schemas.KindSessionDenied:
		ev.Type, ev.Start, ev.Message = "session.denied", m.Start, m.Denial
	case m.Kind == schemas.KindSessionEnd:
		ev.Type, ev.End = "session.end", message.End(m.End)
	case m.Kind == ChannelData || m.Kind == ChannelExtData:
		ev.Type, ev.Data, ev.Stream = "output", string(m.Payload), "stdout"
		if m.Kind == ChannelExtData {
			ev.Stream = "stderr"
		}
		if m.Direction == schemas.Client {
			ev.Type, ev.Stream = "input", "stdin"
		}
	case m.Kind == ChannelOpen:
		ev.Type, ev.Command = "open", channelType(m.Payload)
		// A port forward is described as its stitched command is.
		if text, ok := ForwardText(ChannelType(m.Payload)); ok {
			ev.Message = text
		}
	case m.Kind == ChannelEOF:
		ev.Type = "eof"
	case m.Kind == ChannelClose:
		ev.Type = "close"
	case strings.HasPrefix(m.Kind, RequestPrefix):
		ev.Type, ev.Request = "request", strings.TrimPrefix(m.Kind, RequestPrefix)
		if err := parseRequest(&ev, m.Payload); err != nil {
			ev.Message = fmt.Sprintf("malformed %s payload: %v", ev.Request, err)
		}
	case strings.HasPrefix(m.Kind, GlobalPrefix):
		ev.Type, ev.Request = "global", strings.TrimPrefix(m.Kind, GlobalPrefix)
	default:
		return ev, false
	}
	return ev, true
}

// channelType reads the channel type the open payload starts with, as an SSH string.
func channelType(payload []byte) string {
	var s struct {
		Type string
		Rest []byte `ssh:"rest"`
	}
	if ssh.Unmarshal(payload, &s) != nil {
		return ""
	}
	return s.Type
}

func parseRequest(ev *Event, p []byte) error {
	switch ev.Request {
	case "pty-req":
		var r ptyReq
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.Term, ev.Cols, ev.Rows = r.Term, r.Cols, r.Rows
	case "window-change":
		var r windowChange
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.Cols, ev.Rows = r.Cols, r.Rows
	case "exec", "subsystem", "signal":
		var r stringReq
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.Command = r.Value
	case "env":
		var r envReq
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.Env = r.Name + "=" + r.Value
	case "exit-status":
		var r reqExitStatus
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.ExitStatus = &r.Status
	case "exit-signal":
		var r exitSignal
		if err := ssh.Unmarshal(p, &r); err != nil {
			return err
		}
		ev.Command, ev.Message = r.Signal, r.Message
	}
	return nil
}
