package http

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapline/tapline/schemas"
)

// WriteText writes a transcript in the manner of `curl -v`: "*" lines are the
// gateway's notes, ">" what the agent sent, "<" what came back. Bodies are
// shown when they are text; control characters are escaped so that a recorded
// body cannot drive the reader's terminal.
func WriteText(w io.Writer, exchanges []*Exchange) error {
	bw := bufio.NewWriter(w)
	for _, e := range exchanges {
		writeExchange(bw, e)
	}
	return bw.Flush()
}

func writeExchange(w *bufio.Writer, e *Exchange) {
	fmt.Fprintf(w, "* exchange %d at %s (seq %d-%d)\n", e.Channel, e.Started.UTC().Format(time.RFC3339Nano), e.FirstSeq, e.LastSeq)
	if r := e.Request; r != nil {
		fmt.Fprintf(w, "> %s %s %s\n", safe(r.Method), safe(r.Target), safe(r.Proto))
		fmt.Fprintf(w, "> Host: %s\n", safe(r.Host))
		writeFields(w, "> ", r.Headers)
		w.WriteString(">\n")
		writeBody(w, &e.RequestBody, r.Headers)
	}
	if e.RequestEnd != nil {
		writeFields(w, "> ", e.RequestEnd.Trailers)
		if e.RequestEnd.Error != "" {
			fmt.Fprintf(w, "* request body ended early: %s\n", safe(e.RequestEnd.Error))
		}
	}
	if s := e.Response; s != nil {
		if s.Gateway != "" {
			fmt.Fprintf(w, "* answered by the gateway: %s\n", safe(s.Gateway))
		}
		fmt.Fprintf(w, "< %s %d %s\n", safe(s.Proto), s.Status, http.StatusText(s.Status))
		writeFields(w, "< ", s.Headers)
		w.WriteString("<\n")
		writeBody(w, &e.ResponseBody, s.Headers)
	}
	for _, m := range e.Messages {
		writeMessage(w, &m)
	}
	if e.ResponseEnd != nil {
		writeFields(w, "< ", e.ResponseEnd.Trailers)
		if e.ResponseEnd.Error != "" {
			fmt.Fprintf(w, "* response ended early: %s\n", safe(e.ResponseEnd.Error))
		}
	}
	status := "incomplete"
	if e.Complete() {
		status = "complete"
	}
	fmt.Fprintf(w, "* %s in %s: %d bytes sent, %d bytes received\n\n", status,
		e.Ended.Sub(e.Started).Round(time.Microsecond), e.RequestBody.Size, e.ResponseBody.Size)
}

func writeFields(w *bufio.Writer, prefix string, fs []Field) {
	for _, f := range fs {
		fmt.Fprintf(w, "%s%s: %s\n", prefix, safe(f.Name), safe(f.Value))
	}
}

func writeBody(w *bufio.Writer, b *Body, headers []Field) {
	if b.Size == 0 {
		return
	}
	if enc := Get(headers, "Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		fmt.Fprintf(w, "* %d bytes, %s encoded\n", b.Size, safe(enc))
		return
	}
	if !utf8.Valid(b.Data) {
		fmt.Fprintf(w, "* %d bytes of binary data\n", b.Size)
		return
	}
	w.WriteString(safeBlock(string(b.Data)))
	if !strings.HasSuffix(string(b.Data), "\n") {
		w.WriteString("\n")
	}
	if b.Truncated {
		fmt.Fprintf(w, "* body cut at %d of %d bytes\n", len(b.Data), b.Size)
	}
}

func writeMessage(w *bufio.Writer, m *Message) {
	arrow := ">"
	if m.Dir == schemas.Server {
		arrow = "<"
	}
	switch {
	case m.Close != nil:
		fmt.Fprintf(w, "* %s websocket close %d %s\n", arrow, m.Close.Code, safe(m.Close.Reason))
	case m.Binary || !utf8.Valid(m.Data):
		fmt.Fprintf(w, "%s [ws binary, %d bytes]\n", arrow, m.Size)
	default:
		fmt.Fprintf(w, "%s [ws] %s\n", arrow, safe(string(m.Data)))
	}
}

// safe escapes control characters (line breaks included) and invalid UTF-8.
func safe(s string) string {
	q := strings.Builder{}
	for i, r := range s {
		switch {
		case r == utf8.RuneError && len(s) > i && !utf8.ValidString(s[i:i+1]):
			fmt.Fprintf(&q, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&q, `\x%02x`, r)
		default:
			q.WriteRune(r)
		}
	}
	return q.String()
}

// safeBlock is safe, keeping line breaks and tabs.
func safeBlock(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		parts := strings.Split(strings.TrimSuffix(l, "\r"), "\t")
		for j := range parts {
			parts[j] = safe(parts[j])
		}
		lines[i] = strings.Join(parts, "\t")
	}
	return strings.Join(lines, "\n")
}

// URL is the request's URL at the target.
func (e *Exchange) URL() string {
	r := e.Request
	if r == nil {
		return ""
	}
	scheme := r.Scheme
	if scheme == "" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.Target
}

// JSON is the exchange list as the replay's JSON format: heads as recorded,
// bodies as text when they are UTF-8, else base64 with "encoding": "base64".
type JSON struct {
	Channel     int64            `json:"channel"`
	FirstSeq    int64            `json:"first_seq"`
	LastSeq     int64            `json:"last_seq"`
	Started     time.Time        `json:"started"`
	Ended       time.Time        `json:"ended"`
	Complete    bool             `json:"complete"`
	Request     *Head            `json:"request,omitempty"`
	ReqBody     *JSONBody        `json:"request_body,omitempty"`
	RequestEnd  *End             `json:"request_end,omitempty"`
	Response    *Head            `json:"response,omitempty"`
	RespBody    *JSONBody        `json:"response_body,omitempty"`
	ResponseEnd *End             `json:"response_end,omitempty"`
	Messages    []JSONMessage    `json:"websocket_messages,omitempty"`
	Masks       map[string]int64 `json:"masks,omitempty"`
}

// JSONBody is a body in the JSON format.
type JSONBody struct {
	Size      int64  `json:"size"`
	Text      string `json:"text"`
	Encoding  string `json:"encoding,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// JSONMessage is a WebSocket message in the JSON format.
type JSONMessage struct {
	Seq       int64     `json:"seq"`
	Direction string    `json:"direction"`
	TS        time.Time `json:"ts"`
	Type      string    `json:"type"` // text | binary | close
	Data      string    `json:"data,omitempty"`
	Encoding  string    `json:"encoding,omitempty"`
	Size      int64     `json:"size"`
	Close     *Close    `json:"close,omitempty"`
}

// ToJSON converts exchanges for the JSON format.
func ToJSON(exchanges []*Exchange) []JSON {
	out := make([]JSON, 0, len(exchanges))
	for _, e := range exchanges {
		j := JSON{Channel: e.Channel, FirstSeq: e.FirstSeq, LastSeq: e.LastSeq, Started: e.Started.UTC(), Ended: e.Ended.UTC(),
			Complete: e.Complete(), Request: e.Request, RequestEnd: e.RequestEnd, Response: e.Response,
			ResponseEnd: e.ResponseEnd, Masks: e.Masks, ReqBody: jsonBody(&e.RequestBody), RespBody: jsonBody(&e.ResponseBody)}
		for _, m := range e.Messages {
			jm := JSONMessage{Seq: m.Seq, Direction: string(m.Dir), TS: m.TS.UTC(), Size: m.Size, Close: m.Close, Type: "text"}
			switch {
			case m.Close != nil:
				jm.Type = "close"
			case m.Binary:
				jm.Type = "binary"
			}
			jm.Data, jm.Encoding = text(m.Data)
			j.Messages = append(j.Messages, jm)
		}
		out = append(out, j)
	}
	return out
}

func jsonBody(b *Body) *JSONBody {
	if b.Size == 0 {
		return nil
	}
	t, enc := text(b.Data)
	return &JSONBody{Size: b.Size, Text: t, Encoding: enc, Truncated: b.Truncated}
}

func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// WriteJSON writes ToJSON as one indented document.
func WriteJSON(w io.Writer, exchanges []*Exchange) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ToJSON(exchanges))
}

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/). WebSocket
// messages go in "_webSocketMessages" as Chrome's devtools write them.
type (
	HAR struct {
		Log HARLog `json:"log"`
	}
	HARLog struct {
		Version string     `json:"version"`
		Creator HARCreator `json:"creator"`
		Pages   []HARPage  `json:"pages,omitempty"`
		Entries []HAREntry `json:"entries"`
		Comment string     `json:"comment,omitempty"`
	}
	HARCreator struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	HARPage struct {
		StartedDateTime string         `json:"startedDateTime"`
		ID              string         `json:"id"`
		Title           string         `json:"title"`
		PageTimings     map[string]int `json:"pageTimings"`
	}
	HAREntry struct {
		Pageref           string         `json:"pageref,omitempty"`
		StartedDateTime   string         `json:"startedDateTime"`
		Time              float64        `json:"time"`
		Request           HARRequest     `json:"request"`
		Response          HARResponse    `json:"response"`
		Cache             struct{}       `json:"cache"`
		Timings           HARTimings     `json:"timings"`
		Connection        string         `json:"connection,omitempty"`
		Comment           string         `json:"comment,omitempty"`
		ResourceType      string         `json:"_resourceType,omitempty"`
		WebSocketMessages []HARWSMessage `json:"_webSocketMessages,omitempty"`
	}
	HARRequest struct {
		Method      string       `json:"method"`
		URL         string       `json:"url"`
		HTTPVersion string       `json:"httpVersion"`
		Cookies     []HARCookie  `json:"cookies"`
		Headers     []Field      `json:"headers"`
		QueryString []Field      `json:"queryString"`
		PostData    *HARPostData `json:"postData,omitempty"`
		HeadersSize int          `json:"headersSize"`
		BodySize    int64        `json:"bodySize"`
	}
	HARPostData struct {
		MimeType string  `json:"mimeType"`
		Params   []Field `json:"params"`
		Text     string  `json:"text"`
		Encoding string  `json:"_encoding,omitempty"`
	}
	HARResponse struct {
		Status      int         `json:"status"`
		StatusText  string      `json:"statusText"`
		HTTPVersion string      `json:"httpVersion"`
		Cookies     []HARCookie `json:"cookies"`
		Headers     []Field     `json:"headers"`
		Content     HARContent  `json:"content"`
		RedirectURL string      `json:"redirectURL"`
		HeadersSize int         `json:"headersSize"`
		BodySize    int64       `json:"bodySize"`
		Comment     string      `json:"comment,omitempty"`
	}
	HARContent struct {
		Size     int64  `json:"size"`
		MimeType string `json:"mimeType"`
		Text     string `json:"text,omitempty"`
		Encoding string `json:"encoding,omitempty"`
		Comment  string `json:"comment,omitempty"`
	}
	HARCookie struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	HARTimings struct {
		Blocked float64 `json:"blocked"`
		DNS     float64 `json:"dns"`
		Connect float64 `json:"connect"`
		Send    float64 `json:"send"`
		Wait    float64 `json:"wait"`
		Receive float64 `json:"receive"`
		SSL     float64 `json:"ssl"`
	}
	HARWSMessage struct {
		Type   string  `json:"type"` // send | receive
		Time   float64 `json:"time"` // seconds since the epoch
		Opcode int     `json:"opcode"`
		Data   string  `json:"data"`
	}
)

// ToHAR converts a session's exchanges to a HAR 1.2 log; comment goes on the log
// (the session id, say).
func ToHAR(exchanges []*Exchange, creatorVersion, comment string) *HAR {
	h := &HAR{Log: HARLog{Version: "1.2", Creator: HARCreator{Name: "tapline", Version: creatorVersion},
		Entries: []HAREntry{}, Comment: comment}}
	for _, e := range exchanges {
		if e.Request == nil {
			continue
		}
		h.Log.Entries = append(h.Log.Entries, harEntry(e))
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func harEntry(e *Exchange) HAREntry {
	r := e.Request
	ent := HAREntry{
		StartedDateTime: e.Started.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		Time:            ms(e.Ended.Sub(e.Started)),
		Connection:      fmt.Sprint(e.Channel),
		Request: HARRequest{Method: r.Method, URL: e.URL(), HTTPVersion: r.Proto, Cookies: cookies(r.Headers, "Cookie"),
			Headers: nonNil(r.Headers), QueryString: query(r.Target), HeadersSize: -1, BodySize: e.RequestBody.Size},
		Timings: HARTimings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1},
	}
	if e.RequestBody.Size > 0 {
		t, enc := text(e.RequestBody.Data)
		ent.Request.PostData = &HARPostData{MimeType: Get(r.Headers, "Content-Type"), Params: []Field{}, Text: t, Encoding: enc}
	}
	wait, receive := ent.Time, 0.0
	if s := e.Response; s != nil {
		t, enc := text(e.ResponseBody.Data)
		ent.Response = HARResponse{Status: s.Status, StatusText: http.StatusText(s.Status), HTTPVersion: s.Proto,
			Cookies: cookies(s.Headers, "Set-Cookie"), Headers: nonNil(s.Headers), RedirectURL: Get(s.Headers, "Location"),
			HeadersSize: -1, BodySize: e.ResponseBody.Size,
			Content: HARContent{Size: e.ResponseBody.Size, MimeType: Get(s.Headers, "Content-Type"), Text: t, Encoding: enc}}
		if s.Gateway != "" {
			ent.Response.Comment = "answered by the gateway: " + s.Gateway
		}
		if e.ResponseBody.Truncated {
			ent.Response.Content.Comment = fmt.Sprintf("cut at %d of %d bytes", len(e.ResponseBody.Data), e.ResponseBody.Size)
		}
		if !e.FirstByte.IsZero() {
			wait, receive = ms(e.FirstByte.Sub(e.Started)), ms(e.Ended.Sub(e.FirstByte))
		}
	} else {
		// HAR wants a response; an exchange cut before one has status 0, as browsers write it.
		ent.Response = HARResponse{HTTPVersion: r.Proto, Cookies: []HARCookie{}, Headers: []Field{}, HeadersSize: -1, BodySize: -1,
			Content: HARContent{MimeType: "x-unknown"}, Comment: "no response recorded"}
	}
	ent.Timings.Wait, ent.Timings.Receive = max(wait, 0), max(receive, 0)
	if e.WebSocket() {
		ent.ResourceType = "websocket"
		ent.WebSocketMessages = []HARWSMessage{}
		for _, m := range e.Messages {
			ent.WebSocketMessages = append(ent.WebSocketMessages, harMessage(&m))
		}
	}
	return ent
}

func harMessage(m *Message) HARWSMessage {
	hm := HARWSMessage{Type: "receive", Time: float64(m.TS.UnixMicro()) / 1e6, Opcode: 1, Data: string(m.Data)}
	if m.Dir == schemas.Client {
		hm.Type = "send"
	}
	switch {
	case m.Close != nil:
		hm.Opcode, hm.Data = 8, fmt.Sprintf("%d %s", m.Close.Code, m.Close.Reason)
	case m.Binary:
		// Chrome writes binary messages base64-encoded with opcode 2.
		hm.Opcode, hm.Data = 2, base64.StdEncoding.EncodeToString(m.Data)
	}
	return hm
}

func nonNil(fs []Field) []Field {
	if fs == nil {
		return []Field{}
	}
	return fs
}

func cookies(fs []Field, header string) []HARCookie {
	out := []HARCookie{}
	for _, f := range fs {
		if !strings.EqualFold(f.Name, header) {
			continue
		}
		if header == "Cookie" {
			for _, c := range strings.Split(f.Value, ";") {
				name, value, _ := strings.Cut(strings.TrimSpace(c), "=")
				if name != "" {
					out = append(out, HARCookie{Name: name, Value: value})
				}
			}
			continue
		}
		nv, _, _ := strings.Cut(f.Value, ";")
		name, value, _ := strings.Cut(strings.TrimSpace(nv), "=")
		out = append(out, HARCookie{Name: name, Value: value})
	}
	return out
}

func query(target string) []Field {
	out := []Field{}
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return out
	}
	for _, kv := range strings.Split(q, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		out = append(out, Field{Name: k, Value: v})
	}
	return out
}

// WriteHAR writes ToHAR as one indented document.
func WriteHAR(w io.Writer, exchanges []*Exchange, creatorVersion, comment string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ToHAR(exchanges, creatorVersion, comment))
}
