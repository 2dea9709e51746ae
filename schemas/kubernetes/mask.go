package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// MaskSecret is the mask type counted for a Secret value.
const MaskSecret = "k8s_secret"

// secretToken replaces each Secret value; kubectl shows it as the value.
const secretToken = "[masked:" + MaskSecret + "]"

// maxMaskBody bounds a body parsed for Secrets; a larger one on a Secret path is
// withheld whole by the caller rather than parsed.
const maxMaskBody = 64 << 20

// ErrUnparsed is a body on a Secret path that is not complete JSON (a watch chunk
// cut mid-event, protobuf): the caller must withhold it.
var ErrUnparsed = errors.New("kubernetes: body on a Secret path is not JSON; withhold it")

// MaskSecrets replaces the values of data and stringData in every Secret object
// in body: a Secret, a list of them, watch events (one JSON value after another),
// tables embedding them. secretPath says the request is on the secrets resource,
// so a body without kind (a patch) is a Secret too. It returns body itself and 0
// when nothing was masked.
func MaskSecrets(body []byte, secretPath bool) ([]byte, int, error) {
	if len(body) > maxMaskBody {
		if secretPath {
			return nil, 0, ErrUnparsed
		}
		return body, 0, nil
	}
	if !secretPath && !bytes.Contains(body, []byte(`"Secret`)) {
		return body, 0, nil // cheap path: no Secret can be in here
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if secretPath || n > 0 {
				return nil, 0, ErrUnparsed
			}
			return body, 0, nil // not JSON and not about Secrets: nothing to mask
		}
		n += walk(v, secretPath)
		enc, _ := json.Marshal(v) // decoded JSON always re-encodes
		out.Write(enc)
		out.WriteByte('\n')
	}
	if n == 0 {
		return body, 0, nil
	}
	return out.Bytes(), n, nil
}

// walk masks Secrets in v, top is whether v itself is on a Secret path.
func walk(v any, top bool) int {
	switch v := v.(type) {
	case map[string]any:
		n := 0
		if top || v["kind"] == "Secret" {
			n += maskValues(v, "data") + maskValues(v, "stringData")
		}
		for k, c := range v {
			if k == "data" || k == "stringData" {
				continue
			}
			// A patch on a Secret path carries no kind; its nested objects do.
			n += walk(c, false)
		}
		return n
	case []any:
		n := 0
		for _, c := range v {
			if top && maskPatchOp(c) {
				n++
				continue
			}
			n += walk(c, top)
		}
		return n
	}
	return 0
}

// maskPatchOp masks the value of a JSON patch operation on a Secret's data
// ({"op":"add","path":"/data/key","value":"..."}).
func maskPatchOp(v any) bool {
	op, ok := v.(map[string]any)
	if !ok {
		return false
	}
	path, _ := op["path"].(string)
	if _, has := op["value"]; !has || !(strings.HasPrefix(path, "/data") || strings.HasPrefix(path, "/stringData")) {
		return false
	}
	if m, ok := op["value"].(map[string]any); ok {
		for k := range m {
			m[k] = secretToken
		}
		return true
	}
	op["value"] = secretToken
	return true
}

func maskValues(obj map[string]any, field string) int {
	m, ok := obj[field].(map[string]any)
	if !ok {
		return 0
	}
	for k := range m {
		m[k] = secretToken
	}
	return len(m)
}
