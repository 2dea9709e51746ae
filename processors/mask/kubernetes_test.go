package mask

import (
	"bytes"
	"testing"

	"github.com/tapline/tapline/schemas"
	httpproto "github.com/tapline/tapline/schemas/http"
	"github.com/tapline/tapline/schemas/kubernetes"
)

// Kubernetes frames are masked by the protocol's own Conversation through the
// masker: a Secret's values in a response, the Authorization header, and the
// default detectors on exec output.
func TestKubernetesThroughConversation(t *testing.T) {
	m := defaultMasker(t)
	conv := kubernetes.Protocol{}.NewConversation()
	frames := []*schemas.Frame{
		{Protocol: schemas.Kubernetes, Kind: httpproto.KindRequest, Direction: schemas.Client, Channel: 1, Final: true,
			Payload: httpproto.EncodeHead(&httpproto.Head{Method: "GET", Target: "/api/v1/namespaces/a/secrets/db",
				Headers: []httpproto.Field{{Name: "Authorization", Value: "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"}}})},
		{Protocol: schemas.Kubernetes, Kind: httpproto.KindResponseBody, Direction: schemas.Server, Channel: 1, Final: true,
			Payload: []byte(`{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}`)},
		{Protocol: schemas.Kubernetes, Kind: kubernetes.KindStdout, Direction: schemas.Server, Channel: 2, Final: true,
			Payload: []byte("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\r\n")},
	}
	var total int64
	for _, f := range frames {
		for _, n := range m.Frame(f, "cluster", conv) {
			total += n
		}
		for _, bad := range []string{"eyJzdWIiOiJhIn0", "aHVudGVyMg==", "wJalrXUtnFEMI"} {
			if bytes.Contains(f.Payload, []byte(bad)) {
				t.Errorf("%s keeps %q: %s", f.Kind, bad, f.Payload)
			}
		}
	}
	if total < 3 {
		t.Errorf("masked %d values, want at least 3", total)
	}
}
