package protocol

import "github.com/tapline/tapline/schemas"

// Helpers for conversations building commands; every protocol's commands share them.

// Command statuses.
const (
	StatusOK         = "ok"
	StatusError      = "error"
	StatusCancelled  = "cancelled"
	StatusIncomplete = "incomplete"
)

// NewCommand starts a command at frame f, incomplete until finished.
func NewCommand(f *schemas.Frame, kind, text string, masks map[string]int64) *schemas.Command {
	c := &schemas.Command{
		SessionID: f.SessionID, CommandSeq: f.Seq, SeqEnd: f.Seq, Protocol: f.Protocol, Channel: f.Channel,
		Kind: kind, Text: text, StartedAt: f.TS, EndedAt: f.TS, Status: StatusIncomplete,
	}
	AddMasks(c, masks)
	return c
}

// AddMasks adds mask counts to a command.
func AddMasks(c *schemas.Command, masks map[string]int64) {
	for k, v := range masks {
		if c.Masks == nil {
			c.Masks = map[string]int64{}
		}
		c.Masks[k] += v
	}
}

// Finish ends c at frame f with status (an error status is kept).
func Finish(c *schemas.Command, f *schemas.Frame, status string) {
	if c == nil {
		return
	}
	c.SeqEnd, c.EndedAt = f.Seq, f.TS
	if status != "" && c.Status != StatusError {
		c.Status = status
	}
}

// Clip cuts s to n bytes, marking it truncated (also when truncated says it already was).
func Clip(s string, n int, truncated bool) string {
	if len(s) > n {
		return s[:n] + " …[truncated]"
	}
	if truncated {
		return s + " …[truncated]"
	}
	return s
}
