package http

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
)

// Replay writes a session in a format: a transcript like curl -v, NDJSON with
// one exchange per line, or a HAR 1.2 document. Text and JSON stream exchange
// by exchange as they complete; HAR is written at the end. Each body and
// WebSocket message is kept up to DefaultKeepBody bytes.
func Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], flush func()) error {
	if format != FormatText && format != FormatJSON && format != FormatHAR {
		return fmt.Errorf("http: unknown replay format %q (text, json or har)", format)
	}
	conv := Conversation{}
	var done []*Exchange
	session := ""
	for fr, err := range frames {
		if err != nil {
			return err
		}
		if session == "" {
			session = fr.SessionID
		}
		e := conv.Add(&fr)
		if e == nil {
			continue
		}
		if format == FormatHAR {
			done = append(done, e)
			continue
		}
		if err := writeOne(w, format, e, flush); err != nil {
			return err
		}
	}
	rest := conv.Flush()
	if format == FormatHAR {
		return WriteHAR(w, append(done, rest...), "1", "tapline session "+session)
	}
	for _, e := range rest {
		if err := writeOne(w, format, e, flush); err != nil {
			return err
		}
	}
	return nil
}

func writeOne(w io.Writer, format string, e *Exchange, flush func()) error {
	bw := bufio.NewWriter(w)
	if format == FormatJSON {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(ToJSON([]*Exchange{e})[0]); err != nil {
			return err
		}
	} else if err := WriteText(bw, []*Exchange{e}); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if flush != nil {
		flush()
	}
	return nil
}
