package schemas

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

// Every committed version must be readable by the next, and the working schema must
// be committed as the newest history entry (bump the version when you change it).
func TestSchemaHistoryIsBackwardCompatible(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"frame":   func(b []byte) error { _, err := FrameCodec().Decode(b); return err },
		"command": func(b []byte) error { _, err := CommandCodec().Decode(b); return err },
		"session": func(b []byte) error { _, err := SessionCodec().Decode(b); return err },
		"state":   func(b []byte) error { _, err := StateCodec().Decode(b); return err },
	}
	for name, decode := range decoders {
		hist := History(name)
		if len(hist) == 0 {
			t.Fatalf("%s: no history under schemas/history/%s", name, name)
		}
		cur, _ := SchemaText(name + ".avsc")
		latest, _ := SchemaText(hist[len(hist)-1])
		if !jsonEqual(json.RawMessage(cur), json.RawMessage(latest)) {
			t.Errorf("%s.avsc differs from %s: commit it as the next version", name, hist[len(hist)-1])
		}
		for i, file := range hist {
			older, _ := SchemaText(file)
			if i+1 < len(hist) {
				newer, _ := SchemaText(hist[i+1])
				if err := CheckBackward(older, newer); err != nil {
					t.Errorf("%s -> %s: %v", file, hist[i+1], err)
				}
			}
			// Data written with every old version decodes with today's reader.
			codec, err := goavro.NewCodec(older)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			for n := range 50 {
				var schema any
				_ = json.Unmarshal([]byte(older), &schema)
				datum := randomDatum(rng, schema, "dev.tapline.v1", map[string]any{})
				b, err := codec.SingleFromNative(nil, datum)
				if err != nil {
					t.Fatalf("%s sample %d: %v", file, n, err)
				}
				if err := decode(b); err != nil {
					t.Errorf("%s sample %d not readable: %v", file, n, err)
				}
			}
		}
	}
}

func TestCheckBackwardCatchesBreakingChanges(t *testing.T) {
	base := `{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}`
	cases := map[string]string{
		"added without default": `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}`,
		"type changed":          `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`,
	}
	for name, newer := range cases {
		if CheckBackward(base, newer) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"string","default":""}]}`
	if err := CheckBackward(base, ok); err != nil {
		t.Errorf("added with default: %v", err)
	}
}

// randomDatum builds a goavro native value for an Avro schema in JSON form.
func randomDatum(r *rand.Rand, schema any, ns string, named map[string]any) any {
	switch s := schema.(type) {
	case string:
		if def, ok := named[s]; ok {
			return randomDatum(r, def, ns, named)
		}
		if def, ok := named[ns+"."+s]; ok {
			return randomDatum(r, def, ns, named)
		}
		return randomPrimitive(r, s, "")
	case []any: // union
		branch := s[r.IntN(len(s))]
		if branch == "null" {
			return nil
		}
		return map[string]any{unionName(branch, ns): randomDatum(r, branch, ns, named)}
	case map[string]any:
		typ, _ := s["type"].(string)
		if name, ok := s["name"].(string); ok {
			named[name] = s
			named[ns+"."+name] = s
		}
		switch typ {
		case "record":
			out := map[string]any{}
			for _, f := range s["fields"].([]any) {
				fm := f.(map[string]any)
				out[fm["name"].(string)] = randomDatum(r, fm["type"], ns, named)
			}
			return out
		case "enum":
			syms := s["symbols"].([]any)
			return syms[r.IntN(len(syms))]
		case "array":
			var out []any
			for range r.IntN(3) {
				out = append(out, randomDatum(r, s["items"], ns, named))
			}
			return out
		case "map":
			out := map[string]any{}
			for i := range r.IntN(3) {
				out[fmt.Sprint("k", i)] = randomDatum(r, s["values"], ns, named)
			}
			return out
		default:
			lt, _ := s["logicalType"].(string)
			return randomPrimitive(r, typ, lt)
		}
	}
	panic(fmt.Sprintf("schema %T", schema))
}

func unionName(branch any, ns string) string {
	switch b := branch.(type) {
	case string:
		return b
	case map[string]any:
		if n, ok := b["name"].(string); ok {
			return ns + "." + n
		}
		if lt, ok := b["logicalType"].(string); ok {
			return b["type"].(string) + "." + lt
		}
		return b["type"].(string)
	}
	return ""
}

func randomPrimitive(r *rand.Rand, typ, logical string) any {
	switch typ {
	case "long":
		if logical == "timestamp-micros" {
			return time.UnixMicro(r.Int64N(1 << 52)).UTC()
		}
		return r.Int64()
	case "int":
		return r.Int32()
	case "boolean":
		return r.IntN(2) == 1
	case "bytes":
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	case "string":
		if logical == "uuid" {
			return "0193a3c2-7c4e-7b4e-8d3a-1c2b3d4e5f60"
		}
		return fmt.Sprint("s", r.IntN(1000))
	case "double":
		return r.Float64()
	}
	panic("primitive " + typ)
}
