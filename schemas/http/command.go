package http

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/tapline/tapline/schemas"
)

// Command kinds.
const (
	CommandExchange  = "http.exchange"
	CommandWebSocket = "http.websocket"
)

// Command statuses, as for the other protocols.
const (
	StatusOK         = "ok"
	StatusError      = "error"
	StatusIncomplete = "incomplete"
)

// Command is the exchange as one command: method and target as its text, the
// status code as its exit status, bytes each way (and WebSocket message counts)
// as its parameters. Session, target and subject are the caller's to fill in.
func (e *Exchange) Command() schemas.Command {
	c := schemas.Command{
		CommandSeq: e.FirstSeq, SeqEnd: e.LastSeq, Protocol: schemas.HTTP, Channel: e.Channel,
		Kind: CommandExchange, StartedAt: e.Started, EndedAt: e.Ended, Status: StatusOK,
		Masks: e.Masks,
	}
	if r := e.Request; r != nil {
		c.Text = r.Method + " " + r.Path
	}
	c.Params = []string{"request_bytes=" + strconv.FormatInt(e.RequestBody.Size, 10),
		"response_bytes=" + strconv.FormatInt(e.ResponseBody.Size, 10)}
	if e.WebSocket() {
		c.Kind = CommandWebSocket
		var in, out int64
		for _, m := range e.Messages {
			switch {
			case m.Close != nil:
				c.Params = append(c.Params, fmt.Sprintf("close_%s=%d", dirName(m.Dir), m.Close.Code))
			case m.Dir == schemas.Client:
				in++
			default:
				out++
			}
		}
		c.Rows = in + out
		c.Params = append(c.Params, "messages_client="+strconv.FormatInt(in, 10), "messages_server="+strconv.FormatInt(out, 10))
	}
	if s := e.Response; s != nil {
		code := int32(s.Status)
		c.ExitStatus = &code
		if s.Status >= 400 || s.Gateway != "" {
			c.Status = StatusError
			c.Error = statusLine(s)
		}
	}
	switch {
	case !e.Complete():
		c.Status = StatusIncomplete
	case e.ResponseEnd.Error != "":
		c.Status, c.Error = StatusError, e.ResponseEnd.Error
	case e.RequestEnd.Error != "":
		c.Status, c.Error = StatusError, e.RequestEnd.Error
	}
	return c
}

func dirName(d schemas.Direction) string {
	if d == schemas.Client {
		return "client"
	}
	return "server"
}

func statusLine(h *Head) string {
	s := strconv.Itoa(h.Status) + " " + http.StatusText(h.Status)
	if h.Gateway != "" {
		s += " (gateway: " + h.Gateway + ")"
	}
	return s
}
