package replay

import (
	"bufio"
	"encoding/json"
	"io"
	"iter"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
)

// writeHTTP replays an HTTP session: a curl -v like transcript, NDJSON with
// one exchange per line, or a HAR 1.2 document. The exchanges come from the
// protocol package's Conversation, as the stitched commands do; each body
// and WebSocket message is kept up to hs.DefaultKeepBody bytes.
func writeHTTP(w io.Writer, f Format, frames iter.Seq2[schemas.Frame, error], flush func()) error {
	conv := hs.Conversation{}
	var done []*hs.Exchange
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
		if f == FormatHAR {
			done = append(done, e)
			continue
		}
		if err := writeExchange(w, f, e, flush); err != nil {
			return err
		}
	}
	rest := conv.Flush()
	if f == FormatHAR {
		return hs.WriteHAR(w, append(done, rest...), "1", "tapline session "+session)
	}
	for _, e := range rest {
		if err := writeExchange(w, f, e, flush); err != nil {
			return err
		}
	}
	return nil
}

func writeExchange(w io.Writer, f Format, e *hs.Exchange, flush func()) error {
	bw := bufio.NewWriter(w)
	if f == FormatJSON {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(hs.ToJSON([]*hs.Exchange{e})[0]); err != nil {
			return err
		}
	} else if err := hs.WriteText(bw, []*hs.Exchange{e}); err != nil {
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
