package schemas

import "time"

// Command is one command stitched from a session's frames.
type Command struct {
	SessionID  string
	CommandSeq int64 // seq of the command's first frame; with SessionID, its identity
	SeqEnd     int64
	Protocol   Protocol
	Target     string
	Subject    string
	Channel    int64
	Kind       string
	Text       string
	Params     []string
	StartedAt  time.Time
	EndedAt    time.Time
	Status     string
	Error      string
	Rows       int64
	ExitStatus *int32
	Masks      map[string]int64
}

var commandCodec = newCodec("command", commandToNative, commandFromNative).withDirect(appendCommand).withDirectDecode(decodeCommandBody)

// CommandCodec returns the codec for tapline.commands values.
func CommandCodec() *Codec[Command] { return commandCodec }

func commandToNative(c *Command) map[string]any {
	m := map[string]any{
		"session_id": c.SessionID, "command_seq": c.CommandSeq, "seq_end": c.SeqEnd,
		"protocol": string(c.Protocol), "target": c.Target, "subject": c.Subject, "channel": c.Channel,
		"kind": c.Kind, "text": c.Text, "params": stringsToNative(c.Params),
		"started_at": c.StartedAt, "ended_at": c.EndedAt, "status": c.Status, "error": c.Error,
		"rows": c.Rows, "exit_status": nil, "masks": longMap(c.Masks),
	}
	if c.ExitStatus != nil {
		m["exit_status"] = map[string]any{"int": *c.ExitStatus}
	}
	return m
}

func commandFromNative(m map[string]any) (Command, error) {
	r := reader{m: m}
	c := Command{
		SessionID: r.str("session_id"), CommandSeq: r.long("command_seq"), SeqEnd: r.long("seq_end"),
		Protocol: Protocol(r.str("protocol")), Target: r.str("target"), Subject: r.str("subject"),
		Channel: r.long("channel"), Kind: r.str("kind"), Text: r.str("text"), Params: r.strings("params"),
		StartedAt: r.time("started_at"), EndedAt: r.time("ended_at"), Status: r.str("status"),
		Error: r.str("error"), Rows: r.long("rows"), Masks: r.longMap("masks"),
	}
	if v, ok := r.union("exit_status", "int").(int32); ok {
		c.ExitStatus = &v
	}
	return c, r.err
}
