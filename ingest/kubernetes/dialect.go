package kubernetes

import (
	httpproxy "github.com/tapline/tapline/ingest/http"
)

// Dialect is the Kubernetes API as the HTTP edge serves it: refusals as Status
// objects, exec/attach/port-forward streams recorded per channel.
func Dialect() *httpproxy.Dialect {
	return &httpproxy.Dialect{Refuse: Refuse, NoRetryAfter: true, Messages: messages, Upgrade: upgrade}
}
