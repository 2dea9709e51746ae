package httpproxy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestReadMessageReusesBuffer: messages of every size read back whole and
// unmixed through one reused buffer, a large one is not kept, and the read
// limit still ends the stream.
func TestReadMessageReusesBuffer(t *testing.T) {
	sizes := []int{10, 100_000, 5, keptMessageBytes + 1, 3, 0, 40_000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for i, n := range sizes {
			if err := c.Write(r.Context(), websocket.MessageBinary, bytes.Repeat([]byte{byte('a' + i)}, n)); err != nil {
				return
			}
		}
		_ = c.Write(r.Context(), websocket.MessageText, bytes.Repeat([]byte("x"), 4<<20)) // over the limit
		time.Sleep(time.Second)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(2 << 20)
	var buf bytes.Buffer
	var firstCap int
	for i, n := range sizes {
		typ, data, err := readMessage(ctx, c, &buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(data, bytes.Repeat([]byte{byte('a' + i)}, n)) {
			t.Fatalf("message %d: %d bytes (%.20q), want %d of %q", i, len(data), data, n, rune('a'+i))
		}
		switch i {
		case 1:
			firstCap = buf.Cap()
		case 2:
			if buf.Cap() != firstCap {
				t.Errorf("buffer not reused: capacity %d after %d", buf.Cap(), firstCap)
			}
		case 4:
			if buf.Cap() > keptMessageBytes {
				t.Errorf("a buffer of %d bytes kept after a large message", buf.Cap())
			}
		}
	}
	if _, _, err := readMessage(ctx, c, &buf); err == nil || !strings.Contains(err.Error(), "read limited") {
		t.Fatalf("a message over the read limit: %v", err)
	}
}
