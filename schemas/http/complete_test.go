package http_test

import (
	"bytes"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/protocol"
)

// message is one request or response as the edge saw it.
type message struct {
	dir     schemas.Direction
	ch      int64
	head    *hs.Head
	body    []byte
	encoded []byte // body compressed, when the head says so
}

// traffic is a session's messages: a GET, a JSON POST whose body and answer
// carry a secret, a gzip'd JSON answer, an empty 204, interleaved as HTTP/2
// streams would be.
func traffic(t *testing.T) []message {
	jsonHead := func(extra ...hs.Field) []hs.Field {
		return append([]hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Cookie", Value: "sid=s3cr3t"}}, extra...)
	}
	login := []byte(`{"user":"ann","password":"hunter2","note":"sk_live_123"}`)
	zipped := compress(t, "gzip", []byte(`{"token":"x","password":"p"}`))
	return []message{
		{dir: schemas.Client, ch: 1, head: &hs.Head{Method: "GET", Target: "/v1/items?password=p", Host: "api", Path: "/api/v1/items?password=p", Scheme: "https", Proto: "HTTP/2.0"}},
		{dir: schemas.Client, ch: 2, head: &hs.Head{Method: "POST", Target: "/login", Host: "api", Path: "/api/login", Scheme: "https", Proto: "HTTP/2.0",
			Headers: jsonHead(hs.Field{Name: "Content-Length", Value: "56"})}, body: login},
		{dir: schemas.Server, ch: 2, head: &hs.Head{Status: 200, Proto: "HTTP/2.0", Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"},
			{Name: "Content-Encoding", Value: "gzip"}, {Name: "Content-Length", Value: strconv.Itoa(len(zipped))}, {Name: "Set-Cookie", Value: "sid=new"}}},
			body: zipped},
		{dir: schemas.Server, ch: 1, head: &hs.Head{Status: 204, Proto: "HTTP/2.0"}},
		{dir: schemas.Client, ch: 3, head: &hs.Head{Method: "DELETE", Target: "/v1/items/7", Host: "api", Path: "/api/v1/items/7", Scheme: "https", Proto: "HTTP/1.1"}},
		{dir: schemas.Server, ch: 3, head: &hs.Head{Status: 404, Proto: "HTTP/1.1", Headers: []hs.Field{{Name: "Content-Type", Value: "text/plain"}}},
			body: []byte("no item sk_live_123\n")},
	}
}

// record writes the messages as the edge does: split (head, body, end) or
// complete; one direction's frames of a message share a time.
func record(ms []message, complete bool) []schemas.Frame {
	var fs []schemas.Frame
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	add := func(kind string, m message, p []byte) {
		fs = append(fs, schemas.Frame{Seq: int64(len(fs) + 1), TS: at, Protocol: schemas.HTTP, Kind: kind, Direction: m.dir,
			Channel: m.ch, Payload: p, Final: true})
	}
	for _, m := range ms {
		at = at.Add(time.Millisecond)
		head, body, end := hs.KindRequest, hs.KindRequestBody, hs.KindRequestEnd
		if m.dir == schemas.Server {
			head, body, end = hs.KindResponse, hs.KindResponseBody, hs.KindResponseEnd
		}
		if complete {
			kind := hs.KindRequestComplete
			if m.dir == schemas.Server {
				kind = hs.KindResponseComplete
			}
			add(kind, m, hs.EncodeComplete(m.head, &hs.End{Bytes: int64(len(m.body))}, m.body))
			continue
		}
		add(head, m, hs.EncodeHead(m.head))
		if len(m.body) > 0 {
			add(body, m, m.body)
		}
		add(end, m, hs.EncodeEnd(&hs.End{Bytes: int64(len(m.body))}))
	}
	return fs
}

// masked runs a session's frames through one mask state, as the processor does.
func masked(fs []schemas.Frame) ([]schemas.Frame, map[string]int64) {
	counts := map[string]int64{}
	st := &hs.MaskState{}
	out := slices.Clone(fs)
	for i := range out {
		out[i].Payload = st.MaskFrame(&out[i], secretRules(counts))
	}
	return out, counts
}

var seqs = regexp.MustCompile(`(seq \d+-\d+|"(first_|last_)?seq": ?\d+|seq=\d+)`)

// views is everything a reader gets from a session: the three replays and
// the commands, with seq numbers (which differ: fewer frames) blanked.
func views(t *testing.T, fs []schemas.Frame) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, format := range []string{hs.FormatText, hs.FormatJSON, hs.FormatHAR} {
		var buf bytes.Buffer
		if err := hs.Replay(&buf, format, frameSeq(fs), nil); err != nil {
			t.Fatal(err)
		}
		out[format] = seqs.ReplaceAllString(buf.String(), "seq")
	}
	cmds, err := hs.Protocol{}.Commands(frameSeq(fs), protocol.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, c := range cmds {
		c.CommandSeq, c.SeqEnd = 0, 0
		buf.WriteString(c.Text + " " + c.Status + " " + c.Error + " " + c.StartedAt.String() + " " + c.EndedAt.String() + " ")
		for _, p := range c.Params {
			buf.WriteString(p + " ")
		}
		buf.WriteString(strconv.Itoa(int(*c.ExitStatus)) + "\n")
	}
	out["commands"] = buf.String()
	return out
}

// A request or response recorded as one complete frame replays, stitches
// and masks exactly as its head, body and end frames did.
func TestCompleteFramesReadAsSplitFrames(t *testing.T) {
	ms := traffic(t)
	split, complete := record(ms, false), record(ms, true)
	if len(complete) != len(ms) || len(split) != 2*len(ms)+3 {
		t.Fatalf("%d complete and %d split frames for %d messages", len(complete), len(split), len(ms))
	}
	want, got := views(t, split), views(t, complete)
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s differs:\nsplit:\n%s\ncomplete:\n%s", k, want[k], got[k])
		}
	}
	ms1, c1 := masked(split)
	ms2, c2 := masked(complete)
	if !maps.Equal(c1, c2) || c1[hs.MaskField] == 0 || c1[hs.MaskHeader] == 0 || c1[hs.MaskDecoded] == 0 {
		t.Fatalf("mask counts: split %v, complete %v", c1, c2)
	}
	want, got = views(t, ms1), views(t, ms2)
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("masked %s differs:\nsplit:\n%s\ncomplete:\n%s", k, want[k], got[k])
		}
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "sk_live_123", `"p"`} {
		if bytes.Contains([]byte(got[hs.FormatJSON]), []byte(secret)) {
			t.Errorf("%s left in the masked replay", secret)
		}
	}
}

func frameSeq(fs []schemas.Frame) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		for _, f := range fs {
			if !yield(f, nil) {
				return
			}
		}
	}
}

// A complete frame split into fragments by the recorder still reads whole.
func TestCompleteFrameInFragments(t *testing.T) {
	p := hs.EncodeComplete(&hs.Head{Method: "PUT", Target: "/x", Proto: "HTTP/1.1"}, &hs.End{Bytes: 10}, []byte("0123456789"))
	var fs []schemas.Frame
	for i := 0; i < len(p); i += 7 {
		fs = append(fs, schemas.Frame{Seq: int64(len(fs)), Protocol: schemas.HTTP, Kind: hs.KindRequestComplete, Direction: schemas.Client,
			Channel: 1, Payload: p[i:min(i+7, len(p))], Fragment: int32(len(fs)), Final: i+7 >= len(p)})
	}
	xs, problems := hs.Exchanges(fs, 0)
	if len(problems) > 0 || len(xs) != 1 || string(xs[0].RequestBody.Data) != "0123456789" || xs[0].RequestEnd == nil || xs[0].Request.Method != "PUT" {
		t.Fatalf("problems %v, exchanges %+v", problems, xs)
	}
}

// A complete payload without its head and end lines is a problem, not a panic.
func TestCompletePayloadWithoutHead(t *testing.T) {
	fs := []schemas.Frame{{Protocol: schemas.HTTP, Kind: hs.KindResponseComplete, Direction: schemas.Server, Channel: 1, Payload: []byte("junk"), Final: true}}
	if _, problems := hs.Exchanges(fs, 0); len(problems) != 1 {
		t.Fatalf("problems %v", problems)
	}
}

// FuzzMaskComplete: any complete payload masks and assembles without
// panicking, and a well-formed one keeps its head and end lines.
func FuzzMaskComplete(f *testing.F) {
	f.Add([]byte(`{"method":"POST","proto":"HTTP/1.1","headers":[{"name":"Content-Type","value":"application/json"}]}`), []byte(`{"password":"x"}`), true)
	f.Add([]byte(`{"status":200,"proto":"HTTP/2.0"}`), []byte("\n\n\x00"), false)
	f.Fuzz(func(t *testing.T, head, body []byte, request bool) {
		kind, dir := hs.KindRequestComplete, schemas.Client
		if !request {
			kind, dir = hs.KindResponseComplete, schemas.Server
		}
		p := hs.JoinComplete(head, hs.EncodeEnd(&hs.End{Bytes: int64(len(body))}), body)
		fr := schemas.Frame{Protocol: schemas.HTTP, Kind: kind, Direction: dir, Channel: 1, Payload: p, Final: true}
		st := &hs.MaskState{}
		out := st.MaskFrame(&fr, hs.MaskRules{Field: func(string) bool { return true }, Text: func(b []byte) []byte { return b }})
		if _, err := hs.DecodeHead(head); err == nil && !bytes.ContainsRune(head, '\n') {
			if _, _, _, err := hs.SplitComplete(out); err != nil {
				t.Fatalf("masked payload lost its lines: %q", out)
			}
		}
		fr.Payload = out
		_, _ = hs.Exchanges([]schemas.Frame{fr}, 0)
	})
}
