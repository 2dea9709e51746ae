package kubernetes

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"unicode"

	"github.com/tapline/tapline/schemas"
	httpproto "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/protocol"
)

// Replay formats: the API transcript, then the HTTP views, then a TTY exec as
// asciicast v2 (the console's player plays it as it plays an SSH shell).
const (
	FormatText      = "text"
	FormatJSON      = httpproto.FormatJSON
	FormatHAR       = httpproto.FormatHAR
	FormatAsciicast = "asciicast"
)

// Replay writes a session in format. JSON and HAR are the HTTP package's views of
// the API calls (stream frames are not HTTP and are left out of them).
func Replay(w io.Writer, format string, frames iter.Seq2[schemas.Frame, error], opt protocol.ReplayOptions, flush func()) error {
	switch format {
	case FormatJSON, FormatHAR:
		return httpproto.Replay(w, format, httpOnly(frames), flush)
	case FormatText:
		return transcript(w, frames, flush)
	case FormatAsciicast:
		return asciicast(w, frames, opt.Channel, flush)
	}
	return fmt.Errorf("kubernetes: no replay format %q (have text, json, har, asciicast)", format)
}

func httpOnly(frames iter.Seq2[schemas.Frame, error]) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		for f, err := range frames {
			if err == nil && IsStream(f.Kind) {
				continue
			}
			if !yield(f, err) {
				return
			}
		}
	}
}

// transcript writes one line per API call ("$ kubectl get pods -n x" then its
// status), with exec and attach output as it streamed, control bytes escaped.
func transcript(w io.Writer, frames iter.Seq2[schemas.Frame, error], flush func()) error {
	bw := bufio.NewWriter(w)
	var c Conversation
	for f, err := range frames {
		if err != nil {
			return err
		}
		if head := requestHead(&f); head != nil {
			fmt.Fprintf(bw, "$ kubectl %s\n", safe(ParseCall(head.Method, head.Target).Text()))
		}
		switch f.Kind {
		case KindStdout, KindStderr, KindStdin, KindPortData:
			fmt.Fprintf(bw, "  %s: %s\n", f.Kind[len("k8s."):], safe(string(f.Payload)))
		}
		for _, cmd := range c.Stitch(&f, protocol.Limits{}) {
			writeResult(bw, cmd)
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	return bw.Flush()
}

// requestHead is the head of a request frame (split or complete), or nil.
func requestHead(f *schemas.Frame) *httpproto.Head {
	p := f.Payload
	switch f.Kind {
	case httpproto.KindRequest:
	case httpproto.KindRequestComplete:
		head, _, _, err := httpproto.SplitComplete(p)
		if err != nil {
			return nil
		}
		p = head
	default:
		return nil
	}
	h, err := httpproto.DecodeHead(p)
	if err != nil {
		return nil
	}
	return h
}

func writeResult(w io.Writer, cmd schemas.Command) {
	code := "-"
	if cmd.ExitStatus != nil {
		code = strconv.Itoa(int(*cmd.ExitStatus))
	}
	what := "status"
	if cmd.Kind == CommandStream {
		what = "exit"
	}
	fmt.Fprintf(w, "  -> %s %s", what, code)
	if cmd.Error != "" {
		fmt.Fprintf(w, " (%s)", safe(cmd.Error))
	}
	fmt.Fprintln(w)
}

// safe escapes what a terminal would interpret; replayed bytes are the agent's.
func safe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\uFFFD' || (unicode.IsControl(r) && r != '\t') {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// asciicast writes the stdout of one exec or attach (channel, or the first with
// a resize, which only a TTY sends) as asciicast v2.
func asciicast(w io.Writer, frames iter.Seq2[schemas.Frame, error], channel *int64, flush func()) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var (
		chosen  = channel != nil
		ch      int64
		started bool
		t0      int64
	)
	if chosen {
		ch = *channel
	}
	header := func(f *schemas.Frame, cols, rows int) error {
		started, t0 = true, f.TS.UnixNano()
		return enc.Encode(map[string]any{"version": 2, "width": cols, "height": rows, "timestamp": f.TS.Unix()})
	}
	for f, err := range frames {
		if err != nil {
			return err
		}
		if !chosen && f.Kind == KindResize {
			chosen, ch = true, f.Channel
		}
		if !chosen || f.Channel != ch {
			continue
		}
		var ev []any
		switch f.Kind {
		case KindResize:
			cols, rows := size(f.Payload)
			if !started {
				if err := header(&f, cols, rows); err != nil {
					return err
				}
				continue
			}
			ev = []any{0.0, "r", fmt.Sprintf("%dx%d", cols, rows)}
		case KindStdout, KindStderr:
			if !started {
				if err := header(&f, 80, 24); err != nil {
					return err
				}
			}
			ev = []any{0.0, "o", strings.ToValidUTF8(string(f.Payload), "\uFFFD")}
		default:
			continue
		}
		ev[0] = float64(f.TS.UnixNano()-t0) / 1e9
		if err := enc.Encode(ev); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
	}
	if !started {
		// No terminal in this session: still a valid, empty recording.
		if err := enc.Encode(map[string]any{"version": 2, "width": 80, "height": 24}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func size(p []byte) (cols, rows int) {
	var s struct{ Width, Height int }
	if json.Unmarshal(p, &s) != nil || s.Width <= 0 || s.Height <= 0 {
		return 80, 24
	}
	return s.Width, s.Height
}
