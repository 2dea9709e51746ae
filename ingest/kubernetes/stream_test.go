package kubernetes

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/moby/spdystream/spdy"

	httpproxy "github.com/tapline/tapline/ingest/http"
	"github.com/tapline/tapline/schemas"
	kube "github.com/tapline/tapline/schemas/kubernetes"
)

// spdyClient is what client-go writes for an exec with stdin: named streams,
// then data on them.
func spdyClient(t testing.TB) []byte {
	var b bytes.Buffer
	fr, err := spdy.NewFramer(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, typ := range map[spdy.StreamId]string{1: "error", 3: "stdin", 5: "stdout"} {
		h := http.Header{}
		h.Set("streamType", typ)
		if err := fr.WriteFrame(&spdy.SynStreamFrame{StreamId: id, Headers: h}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []spdy.Frame{
		&spdy.DataFrame{StreamId: 3, Data: []byte("ls -l\n")},
		&spdy.PingFrame{Id: 1},
		&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin},
	} {
		if err := fr.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// split feeds b to a fresh framing in pieces of size cut (all at once when
// cut <= 0), as a relay reads it, and returns the frames and bytes it let through.
func split(t testing.TB, b []byte, cut int) ([]httpproxy.Frame, int) {
	f := newSPDYFraming(false)
	var buf []byte
	var out []httpproxy.Frame
	passed := 0
	for len(b) > 0 {
		n := len(b)
		if cut > 0 && cut < n {
			n = cut
		}
		buf = append(buf, b[:n]...)
		b = b[n:]
		used, frames, err := f.Split(schemas.Client, buf)
		if used > len(buf) {
			t.Fatalf("used %d of %d bytes", used, len(buf))
		}
		out = append(out, frames...)
		passed += used
		buf = buf[used:]
		if err != nil {
			break
		}
	}
	return out, passed
}

// However the relay's reads cut the stream, the same frames are recorded and
// only whole SPDY frames pass.
func TestSPDYFramingCutAnywhere(t *testing.T) {
	b := spdyClient(t)
	whole, n := split(t, b, 0)
	if n != len(b) || len(whole) != 2 || whole[0].Kind != kube.KindStdin || string(whole[0].Payload) != "ls -l\n" || whole[1].Kind != kube.KindClose {
		t.Fatalf("whole: %d of %d bytes, %+v", n, len(b), whole)
	}
	for cut := 1; cut < 40; cut++ {
		got, n := split(t, b, cut)
		if n != len(b) || !reflect.DeepEqual(got, whole) {
			t.Fatalf("cut every %d bytes: %d of %d bytes, %+v", cut, n, len(b), got)
		}
	}
}

func TestMessagesBySubprotocol(t *testing.T) {
	if f := messages(kube.ChannelV5); f == nil || f.Splits() {
		t.Fatal("v5.channel.k8s.io must be framed per message")
	}
	got := messages(kube.ChannelV5).Message(schemas.Server, []byte("\x01hello"))
	if len(got) != 1 || got[0].Kind != kube.KindStdout || string(got[0].Payload) != "hello" {
		t.Fatalf("stdout message: %+v", got)
	}
	if f := messages("SPDY/3.1+portforward.k8s.io"); f == nil || !f.Splits() {
		t.Fatal("the port-forward tunnel must be split as SPDY")
	}
	if messages("chat") != nil {
		t.Fatal("an unknown subprotocol must be recorded whole")
	}
	r := httptest.NewRequest("POST", "/api/v1/namespaces/a/pods/p/portforward", nil)
	r.Header.Set("Upgrade", "SPDY/3.1")
	if upgrade(r) == nil {
		t.Fatal("a SPDY upgrade must be relayed")
	}
	r.Header.Set("Upgrade", "h2c")
	if upgrade(r) != nil {
		t.Fatal("an h2c upgrade must not be relayed as SPDY")
	}
}

func FuzzSPDYFraming(f *testing.F) {
	f.Add(spdyClient(f), 7)
	f.Add([]byte{0x80, 3, 0, 1, 0, 0, 0, 0}, 3)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		whole, n := split(t, b, 0)
		if n > len(b) {
			t.Fatalf("passed %d of %d bytes", n, len(b))
		}
		for _, fr := range whole {
			if !kube.IsStream(fr.Kind) {
				t.Fatalf("kind %q", fr.Kind)
			}
		}
		if cut%64 > 0 {
			got, m := split(t, b, cut%64)
			if m != n || len(got) != len(whole) {
				t.Fatalf("cut every %d: %d frames through %d bytes; whole: %d through %d", cut%64, len(got), m, len(whole), n)
			}
		}
	})
}

// An exec whose Status the server already sent has ended: a reset connection
// after it must not add a second Status, which kubectl reads as "error stream
// protocol error".
func TestNoCutStatusAfterTheExecStatus(t *testing.T) {
	status := []byte(`{"metadata":{},"status":"Success"}`)
	t.Run("spdy", func(t *testing.T) {
		f := newSPDYFraming(false)
		if _, _, err := f.Split(schemas.Client, spdyClient(t)); err != nil {
			t.Fatal(err)
		}
		if f.Cut("reset") == nil {
			t.Fatal("no Status for a cut before the exec ended")
		}
		var b bytes.Buffer
		fr, err := spdy.NewFramer(&b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: status}); err != nil {
			t.Fatal(err)
		}
		_, frames, err := f.Split(schemas.Server, b.Bytes())
		if err != nil || len(frames) != 1 || frames[0].Kind != string(kube.KindStatus) {
			t.Fatalf("server's Status framed as %+v, %v", frames, err)
		}
		if cut := f.Cut("reset"); cut != nil {
			t.Fatalf("a cut after the exec's Status adds %q", cut)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		f := messages(kube.ChannelV5)
		if f.Cut("reset") == nil {
			t.Fatal("no Status for a cut before the exec ended")
		}
		frames := f.Message(schemas.Server, append([]byte{kube.ChannelError}, status...))
		if len(frames) != 1 || frames[0].Kind != string(kube.KindStatus) {
			t.Fatalf("server's Status framed as %+v", frames)
		}
		if cut := f.Cut("reset"); cut != nil {
			t.Fatalf("a cut after the exec's Status adds %q", cut)
		}
	})
}
