//go:build chdb

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// An interactive shell through the gateway replays as asciicast v2 sized by the
// pty request, with exactly the bytes the client received and the resize.
func TestSSHShellAsciicast(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "sam-" + randHex(3)
	token := h.token(t, sub, sshGroup)

	cl, err := ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: h.target.User + "+" + sshTarget, Auth: []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(h.sshHostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to the gateway: %v", err)
	}
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	const cols, rows = 100, 30
	if err := sess.RequestPty("xterm", rows, cols, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	out := &syncBuffer{}
	var stderr bytes.Buffer
	sess.Stdout, sess.Stderr = out, &stderr
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	typeLine := func(line, want string) {
		t.Helper()
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			t.Fatalf("typing %q: %v", line, err)
		}
		if err := poll(20*time.Second, func() error {
			if !strings.Contains(out.String(), want) {
				return fmt.Errorf("no %q in the output yet", want)
			}
			return nil
		}); err != nil {
			t.Fatalf("after %q: %v; the terminal shows %q", line, err, out.String())
		}
	}
	// The shell prints the computed value, the echo only the expression.
	typeLine("echo e2e-$((6*7))", "e2e-42\r\n")
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatalf("window-change: %v", err)
	}
	// x/crypto/ssh hands a channel's requests and its data to the gateway on
	// separate queues, so a resize and keystrokes sent right after it can reach
	// the target in either order (docs/ssh.md). Type only once the resize is
	// recorded: the gateway forwards it right after Kafka has it.
	h.waitRawKind(t, "ssh.request.window-change")
	typeLine("stty size", "40 120\r\n")
	typeLine("printf 'done-%s\\n' $((2+3))", "done-5\r\n")
	if _, err := io.WriteString(stdin, "exit\n"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("shell exit: %v", err)
	}
	received := out.String()
	cl.Close() // the recorded session is the SSH connection: it ends here
	if stderr.Len() > 0 {
		t.Logf("stderr (not part of the terminal stream): %q", stderr.String())
	}

	s := h.waitSessions(t, sub, 1)[0]
	cast := h.replay(t, token, s.SessionID, "asciicast")
	header, events := parseCast(t, cast)
	if header.Version != 2 || header.Width != cols || header.Height != rows {
		t.Errorf("asciicast header %+v; want version 2, %dx%d as requested", header, cols, rows)
	}
	var played strings.Builder
	var resizes []string
	for _, ev := range events {
		switch ev.code {
		case "o":
			played.WriteString(ev.data)
		case "r":
			resizes = append(resizes, ev.data)
		}
	}
	if played.String() != received {
		t.Errorf("asciicast output differs from what the client received:\nplayed   %q\nreceived %q", played.String(), received)
	}
	if len(resizes) != 1 || resizes[0] != "120x40" {
		t.Errorf("resize events %q; want one 120x40", resizes)
	}
	// The typed lines are the session's shell commands, and the session verifies.
	var lines []string
	for _, c := range h.commands(t, token, s.SessionID) {
		if c.Kind == "shell" {
			lines = append(lines, c.Text)
		}
	}
	if want := []string{"echo e2e-$((6*7))", "stty size", "printf 'done-%s\\n' $((2+3))", "exit"}; !slices.Equal(lines, want) {
		t.Errorf("shell commands %q, want %q", lines, want)
	}
	if rep := h.verify(t, token, s.SessionID); !rep.OK || rep.Signature.Status != verify.SigTrusted {
		t.Errorf("verify: %+v", rep)
	}
	var last float64
	for _, ev := range events {
		if ev.t < last {
			t.Errorf("event times go backwards: %v after %v", ev.t, last)
		}
		last = ev.t
	}
}

type castEvent struct {
	t    float64
	code string
	data string
}

// parseCast reads an asciicast v2 document: a header line, then one event per line.
func parseCast(t *testing.T, doc string) (sshproto.CastHeader, []castEvent) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var header sshproto.CastHeader
	var events []castEvent
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
				t.Fatalf("asciicast header %q: %v", sc.Text(), err)
			}
			continue
		}
		var raw []any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil || len(raw) != 3 {
			t.Fatalf("asciicast event %q: %v", sc.Text(), err)
		}
		ts, ok1 := raw[0].(float64)
		code, ok2 := raw[1].(string)
		data, ok3 := raw[2].(string)
		if !ok1 || !ok2 || !ok3 {
			t.Fatalf("asciicast event %q: want [time, code, data]", sc.Text())
		}
		events = append(events, castEvent{ts, code, data})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return header, events
}

// syncBuffer is a bytes.Buffer the SSH client writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitRawKind waits until a frame of the given kind is in the raw topic.
func (h *harness) waitRawKind(t *testing.T, kind string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.topics.Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		found := false
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if f, err := schemas.FrameCodec().Decode(r.Value); err == nil && f.Kind == kind {
				found = true
			}
		})
		if found {
			return
		}
	}
	t.Fatalf("no %s frame in %s within 20s", kind, h.topics.Raw)
}
