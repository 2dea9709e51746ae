package ssh

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

// Stitcher stitches one SSH session's (masked) frames into commands, per channel: an exec
// request with its exit status, a subsystem, a port forward, the interactive shell
// itself (with the shell's exit status) and each line typed into it.
//
// Shell lines are rebuilt from keystrokes, best effort: printable input is appended,
// backspace/DEL removes the last character, ^U clears the line, ^W removes a word,
// ^C cancels it, CR or LF ends it. Cursor keys, history recall and tab completion
// happen in the remote shell and cannot be seen from the input alone: an edited line
// keeps its raw keystrokes (Go-quoted) as the command's only parameter, and a line
// that is empty but used cursor keys or tab (a recalled command) is still recorded.
// Lines whose first keystroke arrived in the same frame (a paste) form one command,
// their texts joined by newlines: a command is identified by its first frame.
type Stitcher struct {
	Channels map[int64]*sshChan `json:"channels,omitempty"`
}

type sshChan struct {
	Type   string           `json:"type,omitempty"`
	Mode   string           `json:"mode,omitempty"` // exec, shell, subsystem
	Term   string           `json:"term,omitempty"`
	Cmd    *schemas.Command `json:"cmd,omitempty"` // exec, subsystem or the shell itself, until it ends
	Line   []byte           `json:"line,omitempty"`
	Raw    []byte           `json:"raw,omitempty"`
	Edited bool             `json:"edited,omitempty"`
	Remote bool             `json:"remote,omitempty"` // cursor keys or tab: the remote shell changed the line
	Esc    Escapes          `json:"esc,omitempty"`    // escape sequence parser state
	LastCR bool             `json:"last_cr,omitempty"`
	Start  int64            `json:"start"`  // seq of the frame with the line's first keystroke, -1 none
	Shared bool             `json:"shared"` // that frame already began another command
	StartT time.Time        `json:"start_t"`
	Masks  map[string]int64 `json:"masks,omitempty"`
	MaskAt int64            `json:"mask_at"` // seq of the last frame whose masks were counted
	Used   int64            `json:"used"`    // seq of the last frame that began a command
}

func (s *Stitcher) channel(id int64) *sshChan {
	if s.Channels == nil {
		s.Channels = map[int64]*sshChan{}
	}
	ch := s.Channels[id]
	if ch == nil {
		ch = &sshChan{Start: -1, Used: -1, MaskAt: -1}
		s.Channels[id] = ch
	}
	return ch
}

// Frame takes the next frame of the session (already masked) and returns the commands
// it completes.
func (s *Stitcher) Frame(f *schemas.Frame, lim protocol.Limits) []schemas.Command {
	lim = lim.WithDefaults()
	var out []schemas.Command
	switch f.Kind {
	case ChannelOpen:
		ch := s.channel(f.Channel)
		typ, extra := ChannelType(f.Payload)
		ch.Type = typ
		if text, ok := ForwardText(typ, extra); ok {
			c := protocol.NewCommand(f, "forward", text, f.Masks)
			c.Status = protocol.StatusOK
			out = append(out, *c)
		}
	case RequestPTY:
		var req struct {
			Term               string
			Cols, Rows, PW, PH uint32
			Modes              string
		}
		if xssh.Unmarshal(f.Payload, &req) == nil {
			s.channel(f.Channel).Term = fmt.Sprintf("%s %dx%d", req.Term, req.Cols, req.Rows)
		}
	case RequestExec, RequestSubsystem:
		var req struct{ Value string }
		text := string(f.Payload)
		if xssh.Unmarshal(f.Payload, &req) == nil {
			text = req.Value
		}
		ch := s.channel(f.Channel)
		ch.Mode = f.Kind[len(RequestPrefix):]
		ch.Cmd = protocol.NewCommand(f, ch.Mode, protocol.Clip(text, lim.MaxText, false), f.Masks)
	case RequestShell:
		ch := s.channel(f.Channel)
		ch.Mode = "shell"
		text := "interactive shell"
		if ch.Term != "" {
			text += " (pty " + ch.Term + ")"
		}
		ch.Cmd = protocol.NewCommand(f, "shell.session", text, nil)
	case ChannelData:
		if ch := s.Channels[f.Channel]; ch != nil && ch.Mode == "shell" && f.Direction == schemas.Client {
			out = ch.keys(f, lim, out)
		}
	case RequestExitStatus:
		if ch := s.Channels[f.Channel]; ch != nil && ch.Cmd != nil && len(f.Payload) >= 4 {
			code := int32(binary.BigEndian.Uint32(f.Payload))
			ch.Cmd.ExitStatus = &code
			status := protocol.StatusOK
			if code != 0 {
				status = protocol.StatusError
				ch.Cmd.Error = "exit status " + strconv.Itoa(int(code))
			}
			protocol.Finish(ch.Cmd, f, status)
			out = append(out, *ch.Cmd)
			ch.Cmd = nil
		}
	case RequestExitSignal:
		if ch := s.Channels[f.Channel]; ch != nil && ch.Cmd != nil {
			var sig struct {
				Signal     string
				CoreDumped bool
				Msg, Lang  string
			}
			ch.Cmd.Error = "killed by a signal"
			if xssh.Unmarshal(f.Payload, &sig) == nil {
				ch.Cmd.Error = "killed by signal " + sig.Signal
				if sig.CoreDumped {
					ch.Cmd.Error += " (core dumped)"
				}
				if sig.Msg != "" {
					ch.Cmd.Error += ": " + sig.Msg
				}
			}
			protocol.Finish(ch.Cmd, f, protocol.StatusError)
			out = append(out, *ch.Cmd)
			ch.Cmd = nil
		}
	case ChannelClose:
		if ch := s.Channels[f.Channel]; ch != nil {
			out = ch.flush(f, out)
			delete(s.Channels, f.Channel)
		}
	}
	return out
}

// Flush ends the session: typed lines not yet ended and commands without an exit
// status are returned as incomplete.
func (s *Stitcher) Flush(f *schemas.Frame, why string) []schemas.Command {
	var out []schemas.Command
	for id, ch := range s.Channels {
		n := len(out)
		out = ch.flush(f, out)
		for i := n; i < len(out); i++ {
			if out[i].Status == protocol.StatusIncomplete && out[i].Error == "" {
				out[i].Error = why
			}
		}
		delete(s.Channels, id)
	}
	sortCommands(out)
	return out
}

// flush returns the channel's open line and command when the channel goes away.
func (ch *sshChan) flush(f *schemas.Frame, out []schemas.Command) []schemas.Command {
	if c := ch.lineCommand(f, protocol.StatusIncomplete); c != nil {
		out = append(out, *c)
	}
	if ch.Cmd != nil {
		status := protocol.StatusIncomplete
		if ch.Mode == "subsystem" {
			status = protocol.StatusOK // subsystems (sftp) end without an exit status
		}
		protocol.Finish(ch.Cmd, f, status)
		out = append(out, *ch.Cmd)
		ch.Cmd = nil
	}
	return out
}

// keys feeds the agent's keystrokes on a shell channel.
func (ch *sshChan) keys(f *schemas.Frame, lim protocol.Limits, out []schemas.Command) []schemas.Command {
	for _, b := range f.Payload {
		if ch.Start < 0 || (ch.Shared && ch.Start != f.Seq) {
			// The line's identity is the first frame not already used by a command.
			ch.Start, ch.StartT = f.Seq, f.TS
			ch.Shared = f.Seq == ch.Used
		}
		if len(ch.Raw) < lim.MaxText {
			ch.Raw = append(ch.Raw, b)
		}
		if ch.Esc != EscText {
			ch.Esc.Text(b)
			continue
		}
		cr := ch.LastCR
		ch.LastCR = b == '\r'
		switch {
		case b == '\r' || b == '\n':
			if b == '\n' && cr {
				ch.Raw = ch.Raw[:0]
				ch.resetStart()
				continue
			}
			out = ch.endLine(f, protocol.StatusOK, out)
		case b == 0x1b:
			ch.Esc, ch.Edited, ch.Remote = EscStart, true, true
		case b == 0x7f || b == 0x08:
			if _, n := utf8.DecodeLastRune(ch.Line); n > 0 {
				ch.Line = ch.Line[:len(ch.Line)-n]
			}
			ch.Edited = true
		case b == 0x15: // ^U
			ch.Line, ch.Edited = ch.Line[:0], true
		case b == 0x17: // ^W
			ch.Line, ch.Edited = eraseWord(ch.Line), true
		case b == 0x03: // ^C
			out = ch.endLine(f, protocol.StatusCancelled, out)
		case b == '\t':
			ch.Line, ch.Edited, ch.Remote = append(ch.Line, '\t'), true, true
		case b < 0x20:
			ch.Edited = true
		default:
			if len(ch.Line) < lim.MaxText {
				ch.Line = append(ch.Line, b)
			}
		}
	}
	if ch.Start >= 0 {
		ch.noteMasks(f)
	}
	return out
}

// noteMasks counts a frame's masks once for the line it contributes to.
func (ch *sshChan) noteMasks(f *schemas.Frame) {
	if ch.MaskAt == f.Seq || len(f.Masks) == 0 {
		return
	}
	ch.MaskAt = f.Seq
	if ch.Masks == nil {
		ch.Masks = map[string]int64{}
	}
	for k, v := range f.Masks {
		ch.Masks[k] += v
	}
}

func eraseWord(line []byte) []byte {
	i := len(line)
	for i > 0 && line[i-1] == ' ' {
		i--
	}
	for i > 0 && line[i-1] != ' ' {
		i--
	}
	return line[:i]
}

// endLine turns the current line into a command (merged into the previous one when
// both began in the same frame) and starts a new line.
func (ch *sshChan) endLine(f *schemas.Frame, status string, out []schemas.Command) []schemas.Command {
	ch.noteMasks(f)
	shared := ch.Shared && ch.Start == f.Seq
	c := ch.lineCommand(f, status)
	if c == nil {
		return out
	}
	if shared && len(out) > 0 && out[len(out)-1].CommandSeq == f.Seq {
		prev := &out[len(out)-1]
		prev.Text += "\n" + c.Text
		prev.Params = append(prev.Params, c.Params...)
		prev.SeqEnd, prev.EndedAt = c.SeqEnd, c.EndedAt
		if c.Status != protocol.StatusOK {
			prev.Status = c.Status
		}
		protocol.AddMasks(prev, c.Masks)
		return out
	}
	ch.Used = c.CommandSeq
	return append(out, *c)
}

// lineCommand builds the command of the current line and resets the line; nil for an
// empty line.
func (ch *sshChan) lineCommand(f *schemas.Frame, status string) *schemas.Command {
	defer func() {
		ch.Line, ch.Raw, ch.Edited, ch.Remote, ch.Esc, ch.Masks, ch.MaskAt = ch.Line[:0], ch.Raw[:0], false, false, EscText, nil, -1
		ch.resetStart()
	}()
	// An empty line is no command, unless cursor keys or completion may have put a
	// command there that only the remote shell knows (history recall).
	if len(ch.Line) == 0 && !ch.Remote {
		return nil
	}
	c := &schemas.Command{
		SessionID: f.SessionID, CommandSeq: ch.Start, SeqEnd: f.Seq, Protocol: f.Protocol, Channel: f.Channel,
		Kind: "shell", Text: string(ch.Line), StartedAt: ch.StartT, EndedAt: f.TS, Status: status,
	}
	if ch.Start < 0 {
		c.CommandSeq, c.StartedAt = f.Seq, f.TS
	}
	if ch.Edited {
		c.Params = []string{strconv.Quote(string(ch.Raw))}
	}
	protocol.AddMasks(c, ch.Masks)
	return c
}

func (ch *sshChan) resetStart() { ch.Start, ch.Shared = -1, false }

// ChannelType reads the channel type and type-specific data of a channel open.
func ChannelType(p []byte) (string, []byte) {
	if len(p) >= 4 {
		n := binary.BigEndian.Uint32(p)
		if int(n) <= len(p)-4 {
			return string(p[4 : 4+n]), p[4+n:]
		}
	}
	return string(p), nil
}

// ForwardText describes a port forward (direct-tcpip) as a command text.
func ForwardText(typ string, extra []byte) (string, bool) {
	if typ != "direct-tcpip" && typ != "direct-streamlocal@openssh.com" {
		return "", false
	}
	var fwd struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if typ == "direct-tcpip" && xssh.Unmarshal(extra, &fwd) == nil {
		return fmt.Sprintf("%s to %s:%d from %s:%d", typ, fwd.Host, fwd.Port, fwd.OrigHost, fwd.OrigPort), true
	}
	var sock struct {
		Path     string
		Reserved string
		Port     uint32
	}
	if xssh.Unmarshal(extra, &sock) == nil {
		return typ + " to " + sock.Path, true
	}
	return typ, true
}

// sortCommands orders commands by their identity (first frame), for deterministic
// output where they come from a map.
func sortCommands(cs []schemas.Command) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].CommandSeq != cs[j].CommandSeq {
			return cs[i].CommandSeq < cs[j].CommandSeq
		}
		return cs[i].Channel < cs[j].Channel
	})
}
