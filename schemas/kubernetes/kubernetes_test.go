package kubernetes

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/tapline/tapline/schemas"
	httpproto "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/protocol"
)

func TestParseCallText(t *testing.T) {
	cases := []struct{ method, target, want string }{
		{"GET", "/api/v1/namespaces/x/pods?limit=500", "get pods -n x"},
		{"GET", "/api/v1/namespaces/x/pods/p", "get pods/p -n x"},
		{"GET", "/api/v1/namespaces/x/pods?watch=true&resourceVersion=1", "watch pods -n x"},
		{"DELETE", "/apis/apps/v1/namespaces/x/deployments/y", "delete deployments/y -n x"},
		{"POST", "/api/v1/namespaces/x/secrets?fieldManager=kubectl-client-side-apply", "create secrets -n x"},
		{"PATCH", "/api/v1/namespaces/x/configmaps/c", "patch configmaps/c -n x"},
		{"GET", "/api/v1/nodes", "get nodes"},
		{"GET", "/api/v1/namespaces/x", "get namespaces/x"},
		{"GET", "/api/v1/namespaces/x/pods/p/log?follow=true", "logs pods/p -n x"},
		{"POST", "/api/v1/namespaces/x/pods/p/exec?command=ls&command=-l&stdout=true", "exec pods/p -n x -- ls -l"},
		{"GET", "/version", "GET /version"},
		{"POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "create selfsubjectreviews"},
	}
	for _, c := range cases {
		if got := ParseCall(c.method, c.target).Text(); got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.method, c.target, got, c.want)
		}
	}
}

func TestDecodeChannel(t *testing.T) {
	cases := []struct {
		proto string
		msg   []byte
		kind  Kind
	}{
		{ChannelV5, []byte("\x00ls\n"), KindStdin},
		{ChannelV5, []byte("\x01out"), KindStdout},
		{ChannelV4, []byte("\x02err"), KindStderr},
		{ChannelV5, []byte(`\x03{"status":"Success"}`), KindStdout},
		{ChannelV5, []byte("\x04{\"Width\":100,\"Height\":40}"), KindResize},
		{ChannelV5, []byte("\xff\x00"), KindClose},
		{PortForwardV2, []byte("\x00GET / HTTP/1.1"), KindPortData},
		{PortForwardV2, []byte("\x01refused"), KindPortError},
	}
	cases[3].msg = append([]byte{3}, `{"status":"Success"}`...)
	cases[3].kind = KindStatus
	for _, c := range cases {
		m, err := DecodeChannel(c.proto, c.msg)
		if err != nil || m.Kind != c.kind || !bytes.Equal(m.Data, c.msg[1:]) {
			t.Errorf("%q on %s: got %+v, %v; want %s", c.msg, c.proto, m, err, c.kind)
		}
	}
	if _, err := DecodeChannel(ChannelV4, []byte("\xff\x00")); err == nil {
		t.Error("v4 has no close channel; decoding it must fail")
	}
	if _, err := DecodeChannel(ChannelV5, nil); err == nil {
		t.Error("an empty message must fail")
	}
}

// spdyExec writes the client side of an exec as client-go's SPDY executor does:
// named streams, then data on them; and the server's stdout and error replies.
func spdyExec(t testing.TB) (client, server []byte) {
	var c, s bytes.Buffer
	cf, err := spdy.NewFramer(&c, nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := spdy.NewFramer(&s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, typ := range map[spdy.StreamId]string{1: "error", 3: "stdin", 5: "stdout", 7: "resize"} {
		h := http.Header{}
		h.Set("streamType", typ)
		if err := cf.WriteFrame(&spdy.SynStreamFrame{StreamId: id, Headers: h}); err != nil {
			t.Fatal(err)
		}
	}
	must(t, cf.WriteFrame(&spdy.DataFrame{StreamId: 3, Data: []byte("echo hi\n")}))
	must(t, cf.WriteFrame(&spdy.DataFrame{StreamId: 7, Data: []byte(`{"Width":120,"Height":30}`)}))
	must(t, cf.WriteFrame(&spdy.PingFrame{Id: 1}))
	must(t, sf.WriteFrame(&spdy.DataFrame{StreamId: 5, Data: []byte("hi\n")}))
	must(t, sf.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte(`{"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`)}))
	return c.Bytes(), s.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, r *SPDYReader) []Message {
	var out []Message
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func TestSPDYExec(t *testing.T) {
	client, server := spdyExec(t)
	var s SPDY
	cr, err := s.Reader(bytes.NewReader(client))
	must(t, err)
	got := readAll(t, cr)
	if len(got) != 2 || got[0].Kind != KindStdin || string(got[0].Data) != "echo hi\n" || got[1].Kind != KindResize {
		t.Fatalf("client side: %+v", got)
	}
	sr, err := s.Reader(bytes.NewReader(server))
	must(t, err)
	got = readAll(t, sr)
	if len(got) != 2 || got[0].Kind != KindStdout || string(got[0].Data) != "hi\n" || got[1].Kind != KindStatus {
		t.Fatalf("server side: %+v", got)
	}
	code, reason := ExitStatus(got[1].Data)
	if code == nil || *code != 3 || !strings.Contains(reason, "non-zero") {
		t.Fatalf("exit status: %v %q", code, reason)
	}
}

func TestMaskSecrets(t *testing.T) {
	const secret = `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="},"stringData":{"token":"s3cr3t"}}`
	cases := []struct {
		name       string
		body       string
		secretPath bool
		n          int
	}{
		{"secret", secret, false, 2},
		{"list", `{"kind":"SecretList","items":[` + secret + `,` + secret + `]}`, true, 4},
		{"watch events", `{"type":"ADDED","object":` + secret + "}\n" + `{"type":"MODIFIED","object":` + secret + "}\n", true, 4},
		{"merge patch without kind", `{"data":{"password":"aHVudGVyMg=="}}`, true, 1},
		{"json patch", `[{"op":"replace","path":"/data/password","value":"aHVudGVyMg=="}]`, true, 1},
		{"configmap untouched", `{"kind":"ConfigMap","data":{"password":"aHVudGVyMg=="}}`, false, 0},
	}
	for _, c := range cases {
		out, n, err := MaskSecrets([]byte(c.body), c.secretPath)
		if err != nil || n != c.n {
			t.Errorf("%s: masked %d (%v), want %d", c.name, n, err, c.n)
			continue
		}
		leaked := strings.Contains(string(out), "aHVudGVyMg==") || strings.Contains(string(out), "s3cr3t")
		if c.n > 0 && leaked {
			t.Errorf("%s: value left in %s", c.name, out)
		}
		if c.n == 0 && string(out) != c.body {
			t.Errorf("%s: changed to %s", c.name, out)
		}
	}
	if _, _, err := MaskSecrets([]byte(`{"type":"ADDED","object":{"kind":"Secret","data":{"p":"`), true); err == nil {
		t.Error("a cut watch chunk on a Secret path must be refused, not passed")
	}
}

// rules masks the word "hunter2" in text, as a detector would.
type rules struct{}

func (rules) Text(b []byte, st protocol.Style, counts protocol.Counts) []byte {
	if !bytes.Contains(b, []byte("hunter2")) {
		return b
	}
	counts.Add("password", 1)
	return bytes.ReplaceAll(b, []byte("hunter2"), []byte("*******"))
}
func (rules) Column(string) bool    { return false }
func (rules) Param(int) bool        { return false }
func (rules) Header(string) bool    { return false }
func (rules) JSONField(string) bool { return false }

type session struct {
	seq    int64
	frames []schemas.Frame
}

func (s *session) add(kind string, dir schemas.Direction, ch int64, p []byte) {
	s.seq++
	s.frames = append(s.frames, schemas.Frame{Seq: s.seq, Kind: kind, Direction: dir, Channel: ch, Payload: p,
		Final: true, TS: time.Unix(1700000000, 0).Add(time.Duration(s.seq) * time.Millisecond)})
}

func (s *session) call(ch int64, method, target string, reqBody string, status int, respBody string) {
	s.add(httpproto.KindRequest, schemas.Client, ch, httpproto.EncodeHead(&httpproto.Head{Method: method, Target: target, Path: target,
		Headers: []httpproto.Field{{Name: "Authorization", Value: "Bearer gateway-token"}}}))
	if reqBody != "" {
		s.add(httpproto.KindRequestBody, schemas.Client, ch, []byte(reqBody))
	}
	s.add(httpproto.KindRequestEnd, schemas.Client, ch, httpproto.EncodeEnd(&httpproto.End{Bytes: int64(len(reqBody))}))
	s.add(httpproto.KindResponse, schemas.Server, ch, httpproto.EncodeHead(&httpproto.Head{Status: status}))
	if respBody != "" {
		s.add(httpproto.KindResponseBody, schemas.Server, ch, []byte(respBody))
	}
	s.add(httpproto.KindResponseEnd, schemas.Server, ch, httpproto.EncodeEnd(&httpproto.End{Bytes: int64(len(respBody))}))
}

// callComplete is call as the edge records an exchange read whole: one
// complete frame each way.
func (s *session) callComplete(ch int64, method, target string, reqBody string, status int, respBody string) {
	s.add(httpproto.KindRequestComplete, schemas.Client, ch, httpproto.EncodeComplete(&httpproto.Head{Method: method, Target: target, Path: target,
		Headers: []httpproto.Field{{Name: "Authorization", Value: "Bearer gateway-token"}}}, &httpproto.End{Bytes: int64(len(reqBody))}, []byte(reqBody)))
	s.add(httpproto.KindResponseComplete, schemas.Server, ch, httpproto.EncodeComplete(&httpproto.Head{Status: status,
		Headers: []httpproto.Field{{Name: "Content-Type", Value: "application/json"}}}, &httpproto.End{Bytes: int64(len(respBody))}, []byte(respBody)))
}

// TestConversationComplete: calls recorded as complete frames are masked and
// stitched as their split frames are: Secret values in a Secret created, read
// and listed (on the secrets resource or not), the Authorization header.
func TestConversationComplete(t *testing.T) {
	var s session
	s.callComplete(1, "POST", "/api/v1/namespaces/x/secrets", `{"kind":"Secret","stringData":{"pw":"topsecret"}}`, 201, `{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}`)
	s.callComplete(2, "GET", "/api/v1/namespaces/x/pods/nope", "", 404, `{"kind":"Status","code":404}`)
	s.callComplete(3, "PATCH", "/api/v1/namespaces/x/secrets/db", `{"data":{"pw":"dG9wc2VjcmV0"}}`, 200, `{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}`)
	s.callComplete(4, "GET", "/api/v1/namespaces/x/configmaps", "", 200, `{"kind":"List","items":[{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}]}`)
	s.callComplete(5, "GET", "/api/v1/namespaces/x/secrets", "", 200, `{"type":"ADDED","object":{"kind":"Secret","data":{"pw":"dG9w`)

	cmds := maskAndStitch(t, s.frames, "topsecret", "dG9wc2VjcmV0", "dG9w", "gateway-token")
	if got := s.frames[1].Payload; !strings.Contains(string(got), secretToken) {
		t.Errorf("the created Secret's response is not masked: %s", got)
	}
	if got := s.frames[9].Payload; string(got) != secretToken {
		t.Errorf("a cut Secret body in a complete frame is not withheld whole: %s", got)
	}
	want := []struct {
		text string
		exit int32
	}{{"create secrets -n x", 201}, {"get pods/nope -n x", 404}, {"patch secrets/db -n x", 200}, {"get configmaps -n x", 200}}
	if len(cmds) < len(want) {
		t.Fatalf("commands: %+v", cmds)
	}
	for i, w := range want {
		c := cmds[i]
		if c.Text != w.text || c.ExitStatus == nil || *c.ExitStatus != w.exit || c.Protocol != schemas.Kubernetes {
			t.Errorf("command %d: %q exit %v, want %q exit %d", i, c.Text, c.ExitStatus, w.text, w.exit)
		}
	}
	var text bytes.Buffer
	must(t, Replay(&text, FormatText, frames(s.frames), protocol.ReplayOptions{}, nil))
	for _, line := range []string{"$ kubectl create secrets -n x", "-> status 404", "$ kubectl get configmaps -n x"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("transcript lacks %q:\n%s", line, text.String())
		}
	}
}

// TestCompleteFragmentWithheld: a complete frame in fragments cannot be parsed
// for Secrets, so each fragment is withheld.
func TestCompleteFragmentWithheld(t *testing.T) {
	conv := Protocol{}.NewConversation()
	p := httpproto.EncodeComplete(&httpproto.Head{Status: 200}, &httpproto.End{}, []byte(`{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}`))
	f := schemas.Frame{Seq: 1, Kind: httpproto.KindResponseComplete, Direction: schemas.Server, Payload: p[:20], Fragment: 0, Final: false}
	if got := conv.Mask(&f, rules{}, protocol.Counts{}); string(got) != secretToken {
		t.Errorf("fragment: %s", got)
	}
}

// TestConversation: Secret values, the Authorization header and detector hits
// in exec output are masked; calls stitch into kubectl-like commands; an exec
// reports the exit status from its status channel.
func TestConversation(t *testing.T) {
	var s session
	s.call(1, "POST", "/api/v1/namespaces/x/secrets", `{"kind":"Secret","stringData":{"pw":"topsecret"}}`, 201, `{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}`)
	s.call(2, "GET", "/api/v1/namespaces/x/pods/nope", "", 404, `{"kind":"Status","code":404}`)
	s.add(httpproto.KindRequest, schemas.Client, 3, httpproto.EncodeHead(&httpproto.Head{Method: "GET", Target: "/api/v1/namespaces/x/pods/p/exec?command=sh&stdin=true&tty=true"}))
	s.add(httpproto.KindResponse, schemas.Server, 3, httpproto.EncodeHead(&httpproto.Head{Status: 101}))
	s.add(KindResize, schemas.Client, 3, []byte(`{"Width":100,"Height":40}`))
	s.add(KindStdin, schemas.Client, 3, []byte("echo hunter2\n"))
	s.add(KindStdout, schemas.Server, 3, []byte("hunter2\r\n"))
	s.add(KindStatus, schemas.Server, 3, []byte(`{"status":"Failure","reason":"NonZeroExitCode","message":"exit 2","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}`))
	s.add(httpproto.KindRequestEnd, schemas.Client, 3, httpproto.EncodeEnd(&httpproto.End{}))
	s.add(httpproto.KindResponseEnd, schemas.Server, 3, httpproto.EncodeEnd(&httpproto.End{}))

	cmds := maskAndStitch(t, s.frames, "topsecret", "dG9wc2VjcmV0", "gateway-token", "hunter2")
	if len(cmds) != 3 {
		t.Fatalf("commands: %+v", cmds)
	}
	want := []struct {
		text string
		exit int32
	}{{"create secrets -n x", 201}, {"get pods/nope -n x", 404}, {"exec pods/p -n x -- sh", 2}}
	for i, w := range want {
		c := cmds[i]
		if c.Text != w.text || c.ExitStatus == nil || *c.ExitStatus != w.exit || c.Protocol != schemas.Kubernetes {
			t.Errorf("command %d: %q exit %v, want %q exit %d", i, c.Text, c.ExitStatus, w.text, w.exit)
		}
	}

	var text, cast bytes.Buffer
	must(t, Replay(&text, FormatText, frames(s.frames), protocol.ReplayOptions{}, nil))
	for _, line := range []string{"$ kubectl create secrets -n x", "-> status 404", "$ kubectl exec pods/p -n x -- sh", "-> exit 2"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("transcript lacks %q:\n%s", line, text.String())
		}
	}
	must(t, Replay(&cast, FormatAsciicast, frames(s.frames), protocol.ReplayOptions{}, nil))
	lines := strings.Split(strings.TrimSpace(cast.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"width":100`) || !strings.Contains(lines[1], `"o","*******\r\n"`) {
		t.Errorf("asciicast:\n%s", cast.String())
	}
}

func frames(fs []schemas.Frame) func(func(schemas.Frame, error) bool) {
	return func(yield func(schemas.Frame, error) bool) {
		for _, f := range fs {
			if !yield(f, nil) {
				return
			}
		}
	}
}

func FuzzDecodeChannel(f *testing.F) {
	f.Add(ChannelV5, []byte("\x01out"))
	f.Add(PortForwardV2, []byte("\x03err"))
	f.Add(ChannelV4, []byte{})
	f.Fuzz(func(t *testing.T, proto string, msg []byte) {
		m, err := DecodeChannel(proto, msg)
		if err == nil && (m.Kind == "" || len(m.Data) != len(msg)-1) {
			t.Fatalf("decoded %+v from %q", m, msg)
		}
	})
}

func FuzzSPDY(f *testing.F) {
	client, server := spdyExec(f)
	f.Add(client, server)
	f.Add([]byte{0x80, 3, 0, 1, 0, 0, 0, 10}, []byte{0, 0, 0, 1, 0, 0, 0, 2, 'h', 'i'})
	f.Fuzz(func(t *testing.T, client, server []byte) {
		var s SPDY
		for _, b := range [][]byte{client, server} {
			r, err := s.Reader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			for range 1 << 12 {
				m, err := r.Next()
				if err != nil {
					break
				}
				if !IsStream(m.Kind) {
					t.Fatalf("kind %q", m.Kind)
				}
			}
		}
	})
}

func FuzzMaskSecrets(f *testing.F) {
	f.Add([]byte(`{"kind":"Secret","data":{"a":"b"}}`), true)
	f.Add([]byte(`[{"op":"add","path":"/data/a","value":"b"}]`), true)
	f.Add([]byte(`{"type":"ADDED","object":{"kind":"Secret","stringData":{"a":"b"}}}`), false)
	f.Fuzz(func(t *testing.T, body []byte, secretPath bool) {
		out, n, err := MaskSecrets(body, secretPath)
		if err != nil {
			return
		}
		if n == 0 && !bytes.Equal(out, body) {
			t.Fatal("unmasked body changed")
		}
		if n > 0 && !json.Valid(bytes.ReplaceAll(out, []byte("\n"), nil)) && !bytes.Contains(out, []byte("\n")) {
			t.Fatalf("masked body is not JSON: %q", out)
		}
	})
}

// decodeFrames cuts b into frames and decodes them one by one, as a relay does.
func decodeFrames(t testing.TB, d *SPDYDecoder, b []byte) ([]Message, error) {
	var out []Message
	for len(b) > 0 {
		n := SPDYFrameSize(b)
		if n == 0 || n > len(b) {
			return out, io.ErrUnexpectedEOF
		}
		m, ok, err := d.Decode(b[:n])
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, m)
		}
		b = b[n:]
	}
	return out, nil
}

// Frame by frame, a relay reads what a reader of the whole stream reads, and
// the end of stdin is a close of channel 0.
func TestSPDYDecoderFrameByFrame(t *testing.T) {
	client, server := spdyExec(t)
	var fin bytes.Buffer
	fr, err := spdy.NewFramer(&fin, nil)
	must(t, err)
	must(t, fr.WriteFrame(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin}))
	client = append(client, fin.Bytes()...)
	var s SPDY
	cd, err := s.Decoder()
	must(t, err)
	got, err := decodeFrames(t, cd, client)
	must(t, err)
	if len(got) != 3 || got[0].Kind != KindStdin || string(got[0].Data) != "echo hi\n" || got[1].Kind != KindResize || got[2].Kind != KindClose {
		t.Fatalf("client side: %+v", got)
	}
	sd, err := s.Decoder()
	must(t, err)
	got, err = decodeFrames(t, sd, server)
	must(t, err)
	if len(got) != 2 || got[0].Kind != KindStdout || got[1].Kind != KindStatus {
		t.Fatalf("server side: %+v", got)
	}
	if _, _, err := sd.Decode([]byte{0x80, 3, 0, 1, 0, 0, 0, 1, 0}); err == nil {
		t.Fatal("a truncated SYN_STREAM decoded")
	}
}

func FuzzSPDYDecoder(f *testing.F) {
	client, server := spdyExec(f)
	f.Add(client)
	f.Add(server)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 2, 'h', 'i'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s SPDY
		d, err := s.Decoder()
		if err != nil {
			t.Fatal(err)
		}
		msgs, _ := decodeFrames(t, d, b)
		for _, m := range msgs {
			if !IsStream(m.Kind) {
				t.Fatalf("kind %q", m.Kind)
			}
		}
	})
}

// FuzzMaskComplete: a complete frame of any bytes is masked without a panic;
// on the secrets resource its output is withheld or still a complete frame
// whose body has no Secret value left.
func FuzzMaskComplete(f *testing.F) {
	f.Add([]byte(`{"kind":"Secret","data":{"pw":"dG9wc2VjcmV0"}}`), true)
	f.Add([]byte(`{"type":"ADDED","object":{"kind":"Secret","stringData":{"a":"dG9wc2VjcmV0"}}}`), false)
	f.Add([]byte("\x00\x01"), true)
	f.Fuzz(func(t *testing.T, body []byte, secretPath bool) {
		target := "/api/v1/namespaces/x/configmaps"
		if secretPath {
			target = "/api/v1/namespaces/x/secrets"
		}
		conv := Protocol{}.NewConversation()
		req := schemas.Frame{Seq: 1, Kind: httpproto.KindRequestComplete, Direction: schemas.Client, Channel: 1, Final: true,
			Payload: httpproto.EncodeComplete(&httpproto.Head{Method: "GET", Target: target}, &httpproto.End{}, nil)}
		conv.Mask(&req, rules{}, protocol.Counts{})
		resp := schemas.Frame{Seq: 2, Kind: httpproto.KindResponseComplete, Direction: schemas.Server, Channel: 1, Final: true,
			Payload: httpproto.EncodeComplete(&httpproto.Head{Status: 200}, &httpproto.End{Bytes: int64(len(body))}, body)}
		out := conv.Mask(&resp, rules{}, protocol.Counts{})
		if string(out) == secretToken {
			return
		}
		_, _, masked, err := httpproto.SplitComplete(out)
		if err != nil {
			t.Fatalf("masked complete frame does not split: %q", out)
		}
		if again, _, err := MaskSecrets(masked, secretPath); err != nil || (secretPath && bytes.Contains(masked, []byte("dG9wc2VjcmV0")) && !bytes.Equal(again, masked)) {
			t.Fatalf("Secret value left in %q (%v)", masked, err)
		}
	})
}

// maskAndStitch masks frames in place and stitches them, saving and restoring
// the conversation as JSON between frames as a restarted processor would; a
// masked frame that still holds one of leaks fails the test.
func maskAndStitch(t *testing.T, frames []schemas.Frame, leaks ...string) []schemas.Command {
	t.Helper()
	conv := Protocol{}.NewConversation()
	var cmds []schemas.Command
	for i := range frames {
		f := &frames[i]
		f.Payload = conv.Mask(f, rules{}, protocol.Counts{})
		for _, bad := range leaks {
			if strings.Contains(string(f.Payload), bad) {
				t.Fatalf("frame %d (%s) leaks %q: %s", f.Seq, f.Kind, bad, f.Payload)
			}
		}
		b, err := json.Marshal(conv)
		must(t, err)
		conv = Protocol{}.NewConversation()
		must(t, json.Unmarshal(b, conv))
		cmds = append(cmds, conv.Stitch(f, protocol.Limits{})...)
	}
	return cmds
}
