package http

import (
	"strconv"

	"github.com/tapline/tapline/schemas"
)

// Heads are encoded on every exchange at the edge, where encoding/json's
// reflection was a twentieth of the gateway's CPU per small request; this
// writes the same JSON document (read back by encoding/json) directly.

// appendHead appends h as JSON, as json.Marshal would write it (without
// HTML escaping, which a payload does not need).
func appendHead(b []byte, h *Head) []byte {
	b = append(b, '{')
	b = appendStringField(b, "method", h.Method, true)
	b = appendStringField(b, "target", h.Target, true)
	b = appendStringField(b, "host", h.Host, true)
	b = appendStringField(b, "path", h.Path, true)
	b = appendStringField(b, "scheme", h.Scheme, true)
	if h.Status != 0 {
		b = append(b, `"status":`...)
		b = strconv.AppendInt(b, int64(h.Status), 10)
		b = append(b, ',')
	}
	b = appendStringField(b, "proto", h.Proto, false)
	b = append(b, `"headers":`...)
	b = appendFields(b, h.Headers, true)
	if h.Gateway != "" {
		b = append(b, `,"gateway":`...)
		b = appendString(b, h.Gateway)
	}
	return append(b, '}')
}

// appendEnd appends e as JSON, as json.Marshal would write it.
func appendEnd(b []byte, e *End) []byte {
	b = append(b, `{"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	if len(e.Trailers) > 0 {
		b = append(b, `,"trailers":`...)
		b = appendFields(b, e.Trailers, false)
	}
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, e.Error)
	}
	return append(b, '}')
}

func appendStringField(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return append(appendString(b, v), ',')
}

func appendFields(b []byte, fs []Field, nullable bool) []byte {
	if fs == nil && nullable {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, f.Name)
		b = append(b, `,"value":`...)
		b = appendString(b, f.Value)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendString(b []byte, s string) []byte { return schemas.AppendJSONString(b, s, false) }
