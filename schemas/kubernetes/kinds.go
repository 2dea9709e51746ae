// Package kubernetes is the Kubernetes API protocol as tapline records it. An API
// call is an HTTP exchange and is written with the HTTP protocol's exchange kinds
// (schemas/http); what Kubernetes adds is the streams of exec, attach and
// port-forward, the kubectl-like command model, and masking of Secret values.
//
// exec and attach multiplex stdin, stdout, stderr, resize and status channels over
// one upgraded connection: WebSocket (v4/v5.channel.k8s.io, one channel byte per
// message) or SPDY/3.1 (one stream per channel, named by its streamType header).
// The edge decodes either into one frame per channel message (the kinds below),
// so replay, masking and stitching never see the transport.
package kubernetes

import (
	httpproto "github.com/tapline/tapline/schemas/http"
)

// Kind is a frame kind of the Kubernetes protocol.
type Kind = string

// Stream frame kinds: one frame per channel message of an exec, attach or
// port-forward, on the channel of the exchange that upgraded.
const (
	KindStdin     Kind = "k8s.stdin"      // CLIENT: stdin bytes
	KindStdout    Kind = "k8s.stdout"     // SERVER: stdout bytes
	KindStderr    Kind = "k8s.stderr"     // SERVER: stderr bytes
	KindResize    Kind = "k8s.resize"     // CLIENT: terminal size ({"Width":w,"Height":h})
	KindStatus    Kind = "k8s.status"     // SERVER: the exec's final Status object (exit code)
	KindPortData  Kind = "k8s.port.data"  // either: port-forward bytes
	KindPortError Kind = "k8s.port.error" // SERVER: port-forward error text
	KindClose     Kind = "k8s.close"      // CLIENT: v5 close of a channel (stdin EOF)
)

// StreamKinds lists the stream kinds.
var StreamKinds = []Kind{KindStdin, KindStdout, KindStderr, KindResize, KindStatus, KindPortData, KindPortError, KindClose}

// Kinds lists every kind the edge writes: the HTTP exchange kinds, then the stream kinds.
var Kinds = append(append([]Kind(nil), httpproto.Kinds...), StreamKinds...)

// IsStream reports whether k is a stream kind.
func IsStream(k string) bool {
	for _, v := range StreamKinds {
		if v == k {
			return true
		}
	}
	return false
}
