// Package hartest validates HAR documents against the HAR 1.2 JSON Schema
// (npm har-schema 2.0.0, vendored with its ISC license in har-schema/), for
// tests of the HAR export.
package hartest

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed har-schema/*.json
var files embed.FS

const base = "https://tapline.invalid/har-schema/"

var (
	once   sync.Once
	schema *jsonschema.Schema
	err    error
)

func compile() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	names, _ := fs.Glob(files, "har-schema/*.json")
	for _, n := range names {
		b, _ := files.ReadFile(n)
		doc, e := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if e != nil {
			err = fmt.Errorf("%s: %w", n, e)
			return
		}
		if err = c.AddResource(base+n[len("har-schema/"):], doc); err != nil {
			return
		}
	}
	schema, err = c.Compile(base + "har.json")
}

// Validate reports whether doc is a valid HAR 1.2 document.
func Validate(doc []byte) error {
	once.Do(compile)
	if err != nil {
		return fmt.Errorf("har schema: %w", err)
	}
	v, e := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if e != nil {
		return e
	}
	return schema.Validate(v)
}
