package schemas

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/linkedin/goavro/v2"
)

// Wire-format markers.
var soeMagic = [2]byte{0xC3, 0x01} // Avro Single-Object Encoding

const confluentMagic = 0x00

// ErrUnknownSchema is returned for a value written with a schema this build does not know.
var ErrUnknownSchema = errors.New("unknown writer schema")

// ErrMalformed is returned for bytes that are not a tapline Avro value.
var ErrMalformed = errors.New("malformed value")

// Codec encodes and decodes one record type. It is safe for concurrent use.
type Codec[T any] struct {
	name     string
	current  *goavro.Codec
	byPrint  map[uint64]*goavro.Codec // every known version, by CRC-64-AVRO fingerprint
	defaults map[string]any           // current schema's field defaults, as goavro natives
	schemaID uint32                   // Confluent schema id; 0 means Single-Object Encoding
	// resolve maps another Confluent schema id to the CRC-64-AVRO fingerprint of
	// the schema the registry holds under it (schemas/registry); nil knows none.
	resolve  func(id uint32) (uint64, bool)
	header   []byte // framing before the Avro body; cap == len, so appends copy
	toNative func(*T) map[string]any
	fromNat  func(map[string]any) (T, error)
	// direct, when set, returns header followed by v's Avro binary body, written
	// without goavro; it must write what goavro would for the current schema.
	direct func(header []byte, v *T) ([]byte, error)
	// directDecode, when set, decodes a body written with the current schema
	// without goavro; it must accept what goavro does, with the same result.
	directDecode func(body []byte) (T, error)
}

func newCodec[T any](name string, to func(*T) map[string]any, from func(map[string]any) (T, error)) *Codec[T] {
	cur, err := loadCodec(name + ".avsc")
	if err != nil {
		panic(err) // embedded schemas are checked by tests; a failure here is a build defect
	}
	c := &Codec[T]{name: name, current: cur, byPrint: map[uint64]*goavro.Codec{}, toNative: to, fromNat: from}
	c.byPrint[uint64(cur.Rabin)] = cur
	c.header = make([]byte, 10)
	copy(c.header, soeMagic[:])
	binary.LittleEndian.PutUint64(c.header[2:], uint64(cur.Rabin))
	for _, h := range History(name) {
		hc, err := loadCodec(h)
		if err != nil {
			panic(err)
		}
		c.byPrint[uint64(hc.Rabin)] = hc
	}
	if c.defaults, err = fieldDefaults(cur); err != nil {
		panic(err)
	}
	return c
}

func loadCodec(file string) (*goavro.Codec, error) {
	b, err := fs.ReadFile(files, file)
	if err != nil {
		return nil, err
	}
	c, err := goavro.NewCodec(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// History lists the committed versions of a schema, oldest first.
func History(name string) []string {
	entries, _ := fs.ReadDir(files, path.Join("history", name))
	var out []string
	for _, e := range entries {
		out = append(out, path.Join("history", name, e.Name()))
	}
	sort.Slice(out, func(i, j int) bool { return versionOf(out[i]) < versionOf(out[j]) })
	return out
}

func versionOf(file string) int {
	var v int
	fmt.Sscanf(path.Base(file), "v%d.avsc", &v)
	return v
}

// WithSchemaID returns a codec that writes the Confluent wire format with the given
// registry id. Decoding still accepts Single-Object Encoding.
func (c *Codec[T]) WithSchemaID(id uint32) *Codec[T] {
	cc := *c
	cc.schemaID = id
	cc.header = []byte{confluentMagic, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cc.header[1:], id)
	return &cc
}

// WithResolver returns a codec that also decodes Confluent-framed values written
// with other registry ids: resolve names the fingerprint of the id's schema, which
// must be a version this build knows (schemas/registry provides one).
func (c *Codec[T]) WithResolver(resolve func(id uint32) (fingerprint uint64, ok bool)) *Codec[T] {
	cc := *c
	cc.resolve = resolve
	return &cc
}

// Schema returns the current schema text.
func (c *Codec[T]) Schema() string { return c.current.Schema() }

// Fingerprint returns the current schema's CRC-64-AVRO fingerprint.
func (c *Codec[T]) Fingerprint() uint64 { return uint64(c.current.Rabin) }

// withDirect sets the hand-written body encoder used instead of goavro's.
func (c *Codec[T]) withDirect(enc func([]byte, *T) ([]byte, error)) *Codec[T] {
	c.direct = enc
	return c
}

// withDirectDecode sets the hand-written decoder of current-schema bodies.
func (c *Codec[T]) withDirectDecode(dec func([]byte) (T, error)) *Codec[T] {
	c.directDecode = dec
	return c
}

// Encode returns v as a framed Kafka value.
func (c *Codec[T]) Encode(v *T) ([]byte, error) {
	if c.direct != nil {
		return c.encodeDirect(v)
	}
	native := c.toNative(v)
	if c.schemaID == 0 {
		b, err := c.current.SingleFromNative(nil, native)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", c.name, err)
		}
		return b, nil
	}
	buf := make([]byte, 5, 256)
	buf[0] = confluentMagic
	binary.BigEndian.PutUint32(buf[1:], c.schemaID)
	b, err := c.current.BinaryFromNative(buf, native)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.name, err)
	}
	return b, nil
}

func (c *Codec[T]) encodeDirect(v *T) ([]byte, error) {
	b, err := c.direct(c.header, v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.name, err)
	}
	return b, nil
}

// Decode parses a framed Kafka value written with any known version of the schema.
func (c *Codec[T]) Decode(b []byte) (T, error) {
	var zero T
	writer, body, err := c.writerOf(b)
	if err != nil {
		return zero, err
	}
	if c.directDecode != nil && writer.Rabin == c.current.Rabin {
		v, err := c.directDecode(body)
		if err != nil {
			return zero, fmt.Errorf("%w: %s: %v", ErrMalformed, c.name, err)
		}
		return v, nil
	}
	return c.decodeNative(writer, body)
}

// decodeNative decodes through goavro, filling in the current schema's defaults
// for fields an older writer did not have.
func (c *Codec[T]) decodeNative(writer *goavro.Codec, body []byte) (T, error) {
	var zero T
	native, rest, err := writer.NativeFromBinary(body)
	if err != nil {
		return zero, fmt.Errorf("%w: %s: %v", ErrMalformed, c.name, err)
	}
	if len(rest) != 0 {
		return zero, fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, c.name, len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return zero, fmt.Errorf("%w: %s: not a record", ErrMalformed, c.name)
	}
	for k, v := range c.defaults {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	v, err := c.fromNat(m)
	if err != nil {
		return zero, fmt.Errorf("%w: %s: %v", ErrMalformed, c.name, err)
	}
	return v, nil
}

func (c *Codec[T]) writerOf(b []byte) (*goavro.Codec, []byte, error) {
	switch {
	case len(b) >= 10 && b[0] == soeMagic[0] && b[1] == soeMagic[1]:
		fp := binary.LittleEndian.Uint64(b[2:10])
		w, ok := c.byPrint[fp]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %s fingerprint %016x", ErrUnknownSchema, c.name, fp)
		}
		return w, b[10:], nil
	case len(b) >= 5 && b[0] == confluentMagic:
		id := binary.BigEndian.Uint32(b[1:5])
		if c.schemaID != 0 && id == c.schemaID {
			return c.current, b[5:], nil
		}
		if c.resolve != nil {
			if fp, ok := c.resolve(id); ok && c.byPrint[fp] != nil {
				return c.byPrint[fp], b[5:], nil
			}
		}
		return nil, nil, fmt.Errorf("%w: %s schema registry id %d (configure the schema registry this topic is written with)", ErrUnknownSchema, c.name, id)
	}
	return nil, nil, fmt.Errorf("%w: %s: no Single-Object or Confluent header", ErrMalformed, c.name)
}

// fieldDefaults returns, for every top-level field with a default, the default as a
// goavro native value, so values from older writers get the reader's defaults.
func fieldDefaults(c *goavro.Codec) (map[string]any, error) {
	var s struct {
		Fields []struct {
			Name    string          `json:"name"`
			Type    json.RawMessage `json:"type"`
			Default json.RawMessage `json:"default"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(c.Schema()), &s); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, f := range s.Fields {
		if f.Default == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(f.Default, &v); err != nil {
			return nil, err
		}
		out[f.Name] = defaultNative(f.Type, v)
	}
	return out, nil
}

// defaultNative converts a JSON default to the native form goavro produces when
// decoding, which the from-native functions expect.
func defaultNative(typ json.RawMessage, v any) any {
	switch d := v.(type) {
	case nil:
		return nil
	case float64:
		if string(typ) == `"int"` {
			return int32(d)
		}
		return int64(d)
	case string:
		if string(typ) == `"bytes"` {
			return []byte(d)
		}
		return d
	case []any:
		return d
	case map[string]any:
		return d
	}
	return v
}
