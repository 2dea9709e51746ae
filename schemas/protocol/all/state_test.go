package all_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all"
)

// A conversation is saved with encoding/json between frames, and encoding/json
// silently leaves out a field whose name an embedded struct's field shares at
// another depth (or both, at the same depth). Such a field's state would be lost
// whenever a processor restarts, so no saved type may have one.
func TestConversationStateFieldsAreAllSaved(t *testing.T) {
	var checked int
	for _, p := range protocol.All() {
		cp, ok := p.(protocol.Conversations)
		if !ok {
			continue
		}
		checked++
		seen := map[reflect.Type]bool{}
		for _, problem := range shadowed(reflect.TypeOf(cp.NewConversation()), seen) {
			t.Errorf("%s conversation: %s", p.Name(), problem)
		}
	}
	if checked < 2 {
		t.Fatalf("%d protocols with conversations checked", checked)
	}
}

// shadowed lists, for t and every type its saved fields reach, the JSON names
// that more than one field of a struct (with its embedded structs) claims.
func shadowed(t reflect.Type, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() == "time" {
		return nil
	}
	seen[t] = true
	owners := map[string][]string{}
	var nested []reflect.Type
	var walk func(st reflect.Type, path string)
	walk = func(st reflect.Type, path string) {
		for i := range st.NumField() {
			f := st.Field(i)
			name, skip := jsonName(f)
			if skip {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				walk(ft, path+f.Name+".")
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			owners[name] = append(owners[name], path+f.Name)
			nested = append(nested, f.Type)
		}
	}
	walk(t, "")
	var out []string
	for name, fields := range owners {
		if len(fields) > 1 {
			out = append(out, t.String()+": "+strings.Join(fields, " and ")+" share the JSON name "+name)
		}
	}
	for _, n := range nested {
		out = append(out, shadowed(n, seen)...)
	}
	return out
}

// jsonName is the name a field's tag gives it ("" for none) and whether the
// tag leaves the field out.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", true
	}
	name, _, _ := strings.Cut(tag, ",")
	return name, false
}
