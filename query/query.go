// Package query holds the query side's shared artefacts: the OpenAPI document of the
// HTTP API (served by package api at /api/v1/openapi.yaml). The API lives in
// query/api, replay reconstruction in query/replay, verification in query/verify.
package query

import _ "embed"

// OpenAPI is the OpenAPI 3 document of the HTTP API.
//
//go:embed openapi.yaml
var OpenAPI []byte
