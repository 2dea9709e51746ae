package ssh

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// maxCastLine bounds one asciicast line (one output chunk, JSON-escaped).
const maxCastLine = 64 << 20

// PlayFormat: a terminal plays a shell from its asciicast (protocol.Playing).
func (Protocol) PlayFormat() string { return "asciicast" }

// Play writes an asciicast v2 stream's output to w, waiting the recorded gap
// before each event. Resize events are passed on as the xterm resize sequence.
func (Protocol) Play(r io.Reader, w io.Writer, wait func(time.Duration) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxCastLine)
	if !sc.Scan() {
		return fmt.Errorf("asciicast: no header: %w", scanErr(sc))
	}
	var h CastHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
		return fmt.Errorf("asciicast: not a version 2 header: %q", sc.Text())
	}
	last := 0.0
	for sc.Scan() {
		var ev []json.RawMessage
		var t float64
		var code, data string
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 ||
			json.Unmarshal(ev[0], &t) != nil || json.Unmarshal(ev[1], &code) != nil || json.Unmarshal(ev[2], &data) != nil {
			return fmt.Errorf("asciicast: malformed event %q", sc.Text())
		}
		if err := wait(time.Duration((t - last) * float64(time.Second))); err != nil {
			return err
		}
		last = t
		if err := playEvent(w, code, data); err != nil {
			return err
		}
	}
	return sc.Err()
}

func playEvent(w io.Writer, code, data string) error {
	switch code {
	case "o":
		_, err := io.WriteString(w, data)
		return err
	case "r":
		var cols, rows int
		if _, err := fmt.Sscanf(data, "%dx%d", &cols, &rows); err == nil {
			_, err = fmt.Fprintf(w, "\x1b[8;%d;%dt", rows, cols)
			return err
		}
	}
	return nil
}

func scanErr(sc *bufio.Scanner) error {
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
