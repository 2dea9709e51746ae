// Package corpus holds sessions recorded from real clients through the real gateway
// (testdata/*.ndjson, see record_test.go) and pins what every stage makes of them:
// the commands and audit records the processors derive, the replay in each format,
// the verify report and integrity alerts (also for a tampered copy). The goldens in
// testdata/golden change only on purpose (go test -update), and the differential
// test checks that stitching and replay tell the same story.
package corpus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/processors/ocsf"
	"github.com/tapline/tapline/processors/pipeline"
	"github.com/tapline/tapline/query/replay"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current code")

type recorded struct {
	name   string
	frames []schemas.Frame // as recorded (raw)
	out    pipeline.Output // what the processors made of them
}

func corpus(t *testing.T) []recorded {
	t.Helper()
	files, err := filepath.Glob("testdata/*.ndjson")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in testdata (%v)", err)
	}
	key := gatewayKey(t)
	var out []recorded
	for _, file := range files {
		frames, err := load(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(file), ".ndjson")
		out = append(out, recorded{name: name, frames: frames, out: process(t, key, frames)})
	}
	return out
}

func gatewayKey(t *testing.T) string {
	b, err := os.ReadFile("testdata/gateway.pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func process(t *testing.T, key string, frames []schemas.Frame) pipeline.Output {
	t.Helper()
	keys, err := integrity.ParseKeys([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mask.New(mask.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Config{Masker: m, TrustedKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	var out pipeline.Output
	for _, f := range frames {
		if err := p.Frame(f, &out); err != nil {
			t.Fatalf("frame %d: %v", f.Seq, err)
		}
	}
	return out
}

func seq(frames []schemas.Frame) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		for _, f := range frames {
			if !yield(f, nil) {
				return
			}
		}
	}
}

func protocolOf(frames []schemas.Frame) schemas.Protocol { return frames[0].Protocol }

// golden compares got with testdata/golden/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden:\n%s", name, firstDiff(string(want), string(got)))
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d\n want: %s\n  got: %s", i+1, wl, gl)
		}
	}
	return "(lengths differ)"
}

func ndjson[T any](t *testing.T, vs []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range vs {
		if err := enc.Encode(&vs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// formats are the replay formats of a protocol, as the API offers them.
func formats(p schemas.Protocol) []replay.Format {
	if p == schemas.SSH {
		return []replay.Format{replay.FormatText, replay.FormatJSON, replay.FormatAsciicast}
	}
	return []replay.Format{replay.FormatText, replay.FormatJSON}
}

var extension = map[replay.Format]string{replay.FormatText: "replay.txt", replay.FormatJSON: "replay.ndjson", replay.FormatAsciicast: "cast"}

func TestGoldens(t *testing.T) {
	for _, r := range corpus(t) {
		t.Run(r.name, func(t *testing.T) {
			golden(t, r.name+".commands.ndjson", ndjson(t, r.out.Commands))
			golden(t, r.name+".audit.ndjson", ndjson(t, r.out.Audit))
			var events []ocsf.Event
			for i := range r.out.Audit {
				ev, err := ocsf.FromAudit(&r.out.Audit[i])
				if err != nil {
					t.Fatal(err)
				}
				events = append(events, ev)
			}
			golden(t, r.name+".ocsf.ndjson", ndjson(t, events))
			golden(t, r.name+".sessions.ndjson", ndjson(t, r.out.Sessions))
			for _, f := range formats(protocolOf(r.frames)) {
				var buf bytes.Buffer
				if err := replay.Write(&buf, protocolOf(r.frames), f, seq(r.out.Frames), replay.Options{}, nil); err != nil {
					t.Fatalf("replay %s: %v", f, err)
				}
				golden(t, r.name+"."+extension[f], buf.Bytes())
			}
			golden(t, r.name+".verify.json", verifyReport(t, r.out.Frames))
		})
	}
}

func verifyReport(t *testing.T, frames []schemas.Frame) []byte {
	t.Helper()
	k, err := hex.DecodeString(gatewayKey(t))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Session(frames[0].SessionID, seq(frames), verify.Options{TrustedKeys: []ed25519.PublicKey{k}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// tampered is the psql session with one frame dropped (a gap) and one frame's
// prev_hash altered (a broken chain): what integrity alerts and verify report for it
// is pinned too, in the one vocabulary of chain problems.
func tampered(t *testing.T) []schemas.Frame {
	t.Helper()
	frames, err := load("testdata/psql-1.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	frames = slices.Delete(frames, 5, 6)
	frames[10].PrevHash = bytes.Repeat([]byte{0xab}, 32)
	return frames
}

func TestTamperedGoldens(t *testing.T) {
	frames := tampered(t)
	out := process(t, gatewayKey(t), frames)
	golden(t, "tampered.audit.ndjson", ndjson(t, out.Audit))
	golden(t, "tampered.verify.json", verifyReport(t, frames))
}

// load reads a session recorded as one JSON frame per line.
func load(path string) ([]schemas.Frame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []schemas.Frame
	for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var f schemas.Frame
		if err := json.Unmarshal(line, &f); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// TestStateRoundTrip processes every corpus session saving the processor's state
// after each frame and restoring it into a new processor, as a restarted processor
// does: the commands must be the same as in one run.
func TestStateRoundTrip(t *testing.T) {
	keys, err := integrity.ParseKeys([]string{gatewayKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := mask.New(mask.Config{})
	for _, r := range corpus(t) {
		var out pipeline.Output
		saved := map[string][]byte{}
		for _, f := range r.frames {
			p, err := pipeline.New(pipeline.Config{Masker: m, TrustedKeys: keys})
			if err != nil {
				t.Fatal(err)
			}
			for id, v := range saved {
				if err := p.Restore(id, v); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Frame(f, &out); err != nil {
				t.Fatal(err)
			}
			changes, err := p.TakeDirty()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range changes {
				saved[c.SessionID] = c.Value
			}
		}
		if got, want := ndjson(t, out.Commands), ndjson(t, r.out.Commands); !bytes.Equal(got, want) {
			t.Errorf("%s: commands after restores differ:\n%s", r.name, firstDiff(string(want), string(got)))
		}
	}
}
