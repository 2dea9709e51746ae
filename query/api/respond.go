package api

import (
	"encoding/json"
	"github.com/tapline/tapline/query/wire"
	"net/http"
)

// The API's JSON types live in package wire, which clients import.
type (
	ErrorBody = wire.ErrorBody
)

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "bad_request", msg)
}

// internal answers a store failure without its details, which are logged.
func (s *server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Logger.ErrorContext(r.Context(), "query api: store error", "path", r.URL.Path, "err", err)
	if r.Context().Err() != nil {
		return // the client is gone
	}
	writeError(w, http.StatusInternalServerError, "internal", "the recording store failed; see the query server's log")
}
