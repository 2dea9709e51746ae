package pipeline

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// httpSaved is the state of httpSession after its first savedAfter frames, as
// a processor that kept HTTP masking under the mask state's "http" key and the
// stitcher under "http" saved it.
const (
	httpSaved  = "testdata/http-session-v1.json"
	savedAfter = 2 // session start and the request head
)

// httpSession is a JSON POST whose whole body holds a password, and its answer.
func httpSession(t testing.TB) *sessiontest.Session {
	start := alice
	start.Target = "api"
	s := sessiontest.Start(schemas.HTTP, start, sessiontest.NewKey(1), t0)
	body := `{"user":"bob","password":"hunter2"}`
	s.Add(schemas.Client, hs.KindRequest, 1, hs.EncodeHead(&hs.Head{Method: "POST", Target: "/v1/login", Path: "/api/v1/login", Proto: "HTTP/1.1",
		Headers: []hs.Field{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: strconv.Itoa(len(body))}}}))
	s.Add(schemas.Client, hs.KindRequestBody, 1, []byte(body))
	s.Add(schemas.Client, hs.KindRequestEnd, 1, hs.EncodeEnd(&hs.End{Bytes: int64(len(body))}))
	s.Add(schemas.Server, hs.KindResponse, 1, hs.EncodeHead(&hs.Head{Status: 204, Proto: "HTTP/1.1"}))
	s.Add(schemas.Server, hs.KindResponseEnd, 1, hs.EncodeEnd(&hs.End{}))
	s.End("client closed")
	return s
}

// (The chain of the replayed frames differs from the saved tip's: frames are
// salted per run. Chain continuity across restores is tested elsewhere; this is
// about the mask and stitch state.)
//
// A session saved mid-exchange by the processor before HTTP was a protocol
// conversation resumes: the body is still masked by field name (the mask
// state knew its length) and the exchange is stitched into one command.
func TestHTTPSessionSavedBeforeConversationsLoads(t *testing.T) {
	s := httpSession(t)
	if os.Getenv("TAPLINE_WRITE_HTTP_STATE") != "" {
		writeHTTPState(t, s)
	}
	saved, err := os.ReadFile(httpSaved)
	if err != nil {
		t.Fatal(err)
	}
	p := newProcessor(t)
	if err := p.Restore(s.Frames[0].SessionID, saved); err != nil {
		t.Fatalf("restore: %v", err)
	}
	var out Output
	for _, f := range s.Frames[savedAfter:] {
		p.Frame(f, &out)
	}
	var body string
	for _, f := range out.Frames {
		if f.Kind == hs.KindRequestBody {
			body = string(f.Payload)
		}
	}
	if body != `{"user":"bob","password":"[masked:json_field]"}` {
		t.Fatalf("body after restore: %q", body)
	}
	if len(out.Commands) != 1 || !strings.HasPrefix(out.Commands[0].Text, "POST ") || out.Commands[0].ExitStatus == nil || *out.Commands[0].ExitStatus != 204 {
		t.Fatalf("commands after restore: %+v", out.Commands)
	}
}

func writeHTTPState(t *testing.T, s *sessiontest.Session) {
	p := newProcessor(t)
	var out Output
	for _, f := range s.Frames[:savedAfter] {
		p.Frame(f, &out)
	}
	changes, err := p.TakeDirty()
	if err != nil || len(changes) != 1 {
		t.Fatalf("save: %v %v", changes, err)
	}
	if err := os.WriteFile(httpSaved, changes[0].Value, 0o644); err != nil {
		t.Fatal(err)
	}
}
