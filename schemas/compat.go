package schemas

import (
	"encoding/json"
	"fmt"
	"io/fs"
)

// CheckBackward reports why a reader using schema newer could not read data written
// with schema older, or nil. Rules (a subset of Avro resolution that goavro-based
// readers here rely on): a field added in newer needs a default; a field kept in both
// keeps its type exactly. Removing a field is allowed.
func CheckBackward(older, newer string) error {
	of, err := topFields(older)
	if err != nil {
		return fmt.Errorf("older: %w", err)
	}
	nf, err := topFields(newer)
	if err != nil {
		return fmt.Errorf("newer: %w", err)
	}
	for name, n := range nf {
		o, ok := of[name]
		if !ok {
			if n.Default == nil {
				return fmt.Errorf("field %q was added without a default", name)
			}
			continue
		}
		if !jsonEqual(o.Type, n.Type) {
			return fmt.Errorf("field %q changed type", name)
		}
	}
	return nil
}

type fieldSpec struct {
	Type    json.RawMessage `json:"type"`
	Default json.RawMessage `json:"default"`
}

func topFields(schema string) (map[string]fieldSpec, error) {
	var s struct {
		Fields []struct {
			Name string `json:"name"`
			fieldSpec
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(schema), &s); err != nil {
		return nil, err
	}
	out := map[string]fieldSpec{}
	for _, f := range s.Fields {
		out[f.Name] = f.fieldSpec
	}
	return out, nil
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// SchemaText returns an embedded schema file (e.g. "frame.avsc" or a History entry).
func SchemaText(file string) (string, error) {
	b, err := fs.ReadFile(files, file)
	return string(b), err
}
