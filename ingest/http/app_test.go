package httpproxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/coder/websocket"
)

// app is the test's target application: a JSON API, an SSE stream, a
// WebSocket echo, large bodies and trailers. It remembers what reached it.
type app struct {
	mu       sync.Mutex
	seen     []seenRequest
	sseNext  chan struct{} // each receive lets the SSE stream send its next event
	wsClosed chan websocket.CloseError
}

type seenRequest struct {
	Method, Path, Auth, Proto string
	Body                      []byte
	Header                    http.Header
}

func newApp() *app {
	return &app{sseNext: make(chan struct{}, 16), wsClosed: make(chan websocket.CloseError, 4)}
}

func (a *app) requests() []seenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]seenRequest(nil), a.seen...)
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.URL.Path != "/upload" {
		body, _ = io.ReadAll(r.Body)
	}
	a.mu.Lock()
	a.seen = append(a.seen, seenRequest{Method: r.Method, Path: r.URL.RequestURI(), Auth: r.Header.Get("Authorization"),
		Proto: r.Proto, Body: body, Header: r.Header.Clone()})
	a.mu.Unlock()
	switch r.URL.Path {
	case "/v1/items":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "sid=s3cr3t; HttpOnly")
		fmt.Fprintf(w, `{"method":%q,"received":%d,"token":"abc123","items":[1,2,3]}`, r.Method, len(body))
	case "/v1/empty":
		w.WriteHeader(http.StatusNoContent)
	case "/events":
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		for i := 1; i <= 3; i++ {
			select {
			case <-a.sseNext:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d}\n\n", i, i)
			rc.Flush()
		}
	case "/ws":
		a.websocket(w, r)
	case "/large":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		writePattern(w, int64(n))
	case "/upload":
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	case "/trailers":
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "body with a trailer\n")
		w.Header().Set("X-Checksum", "c0ffee")
	default:
		http.Error(w, "no such path "+r.URL.Path, http.StatusNotFound)
	}
}

// websocket echoes messages, upper-casing text, until the client closes;
// a text message "close" makes the server close with 4002.
func (a *app) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo.v1"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if ok := asClose(err, &ce); ok {
				a.wsClosed <- ce
			}
			return
		}
		if typ == websocket.MessageText && string(data) == "close" {
			c.Close(4002, "server says bye")
			return
		}
		if typ == websocket.MessageText {
			data = []byte("ECHO " + string(data))
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// writePattern writes n deterministic bytes.
func writePattern(w io.Writer, n int64) {
	buf := pattern(64 << 10)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}
