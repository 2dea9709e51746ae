package httpproxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
	hs "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/protocol"
)

func frameSeq(fs []schemas.Frame) iter.Seq2[schemas.Frame, error] {
	return func(yield func(schemas.Frame, error) bool) {
		for _, f := range fs {
			if !yield(f, nil) {
				return
			}
		}
	}
}

// kindsOf lists a session's frame kinds by exchange (channel), lifecycle
// frames left out.
func kindsOf(fs []schemas.Frame) map[int64][]string {
	out := map[int64][]string{}
	for _, f := range fs {
		if !f.IsLifecycle() {
			out[f.Channel] = append(out[f.Channel], f.Kind)
		}
	}
	return out
}

// A request and response without a streamed body are one frame each way,
// over HTTP/1.1 and h2, in strict mode, bodiless answers (204, HEAD)
// included: the agent gets the target's answer,
// the chain verifies, and replay and commands read them as any exchange.
func TestSmallExchangesAreOneFrameEachWay(t *testing.T) {
	skipShort(t)
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"}})
	reqBody := `{"name":"widget"}`
	for _, h2 := range []bool{false, true} {
		sub := fmt.Sprint("small-", h2)
		tok := g.token(sub, "dev")
		cl := g.client(h2)
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, g.base+"/api/v1/items", nil)
			if method == "POST" {
				req, _ = http.NewRequest(method, g.base+"/api/v1/items", strings.NewReader(reqBody))
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || got["method"] != method {
				t.Fatalf("h2=%v %s: answer %v, %v", h2, method, got, err)
			}
		}
		// Answers without a body: a 204, and a HEAD's (a length, no bytes).
		for _, method := range []string{"PUT", "HEAD"} {
			path := map[string]string{"PUT": "/api/v1/empty", "HEAD": "/api/v1/items"}[method]
			req, _ := http.NewRequest(method, g.base+path, strings.NewReader(""))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatalf("h2=%v %s: %v", h2, method, err)
			}
			resp.Body.Close()
			if want := map[string]int{"PUT": 204, "HEAD": 200}[method]; resp.StatusCode != want {
				t.Fatalf("h2=%v %s: status %d, want %d", h2, method, resp.StatusCode, want)
			}
		}
		cl.Transport.(*http.Transport).CloseIdleConnections()
		fs := g.frames.session(bySubject(sub))
		verifyChain(t, g.signer, fs)
		kinds := kindsOf(fs)
		for ch := int64(1); ch <= 4; ch++ {
			if k := kinds[ch]; len(k) != 2 || k[0] != hs.KindRequestComplete || k[1] != hs.KindResponseComplete {
				t.Fatalf("h2=%v exchange %d: frames %v, want one complete frame each way", h2, ch, k)
			}
		}
		xs := exchanges(t, fs)
		if len(xs) != 4 || xs[2].Response.Status != 204 || !xs[2].Complete() || xs[3].ResponseBody.Size != 0 || !xs[3].Complete() ||
			string(xs[1].RequestBody.Data) != reqBody || xs[1].RequestEnd.Bytes != int64(len(reqBody)) ||
			!strings.Contains(string(xs[1].ResponseBody.Data), `"received":17`) || xs[0].Response.Status != 200 {
			t.Fatalf("h2=%v: exchanges %+v", h2, xs)
		}
		cmds, err := hs.Protocol{}.Commands(frameSeq(fs), protocol.Limits{})
		if err != nil || len(cmds) != 4 || cmds[0].Text != "GET /api/v1/items" || cmds[1].Text != "POST /api/v1/items" ||
			cmds[1].Params[0] != "request_bytes=17" || cmds[1].Status != hs.StatusOK {
			t.Fatalf("h2=%v: commands %+v, %v", h2, cmds, err)
		}
	}
}

// A strict upload of known length is recorded in full body_chunk_bytes
// frames (one acknowledgement each), whatever size the target's transport
// reads in, with the last chunk and the end acknowledged together.
func TestStrictUploadInFullChunks(t *testing.T) {
	skipShort(t)
	const size, chunk = 8 << 20, 256 << 10
	a := newApp()
	up := startUpstream(t, a)
	g := startGateway(t, gatewayOpts{targets: appTarget("api", up, ""), env: map[string]string{"APP_TOKEN": "x"},
		httpExtra: fmt.Sprintf(", body_chunk_bytes: %d", chunk)})
	ref := sha256.New()
	writePattern(ref, size)
	want := hex.EncodeToString(ref.Sum(nil))
	for _, h2 := range []bool{false, true} {
		sub := fmt.Sprint("upload-", h2)
		cl := g.client(h2)
		req, _ := http.NewRequest("PUT", g.base+"/api/upload", &patternReader{buf: pattern(64 << 10), n: size})
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+g.token(sub, "dev"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Bytes  int64  `json:"bytes"`
			SHA256 string `json:"sha256"`
		}
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		cl.Transport.(*http.Transport).CloseIdleConnections()
		if got.Bytes != size || got.SHA256 != want {
			t.Fatalf("h2=%v: target got %+v", h2, got)
		}
		fs := g.frames.session(bySubject(sub))
		verifyChain(t, g.signer, fs)
		var bodies int
		for _, f := range fs {
			if f.Kind == hs.KindRequestBody {
				bodies++
				if len(f.Payload) != chunk {
					t.Fatalf("h2=%v: a request body frame of %d bytes, want %d", h2, len(f.Payload), chunk)
				}
			}
		}
		if bodies != size/chunk {
			t.Fatalf("h2=%v: %d request body frames, want %d", h2, bodies, size/chunk)
		}
		if d := g.frames.bodyDigest(fs[0].SessionID, schemas.Client, 1); d == nil || d.n != size || d.sum() != want {
			t.Fatalf("h2=%v: recorded upload %+v", h2, d)
		}
		if xs := exchanges(t, fs); len(xs) != 1 || !xs[0].Complete() || xs[0].RequestEnd.Bytes != size || xs[0].RequestEnd.Error != "" {
			t.Fatalf("h2=%v: exchange %+v", h2, xs)
		}
	}
}
