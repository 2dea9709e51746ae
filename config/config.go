// Package config loads every role's configuration the same way: a YAML file
// (unknown keys are errors, so a misspelt setting stops the role at start), then
// TAPLINE_* environment overrides, then the role's own defaults and checks. Flags
// are applied by the command on top (docs/configuration.md).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override: TAPLINE_ + the YAML key path in
// upper case, joined with "_" (kafka.brokers -> TAPLINE_KAFKA_BROKERS).
const EnvPrefix = "TAPLINE_"

// Lookup finds an environment variable; os.LookupEnv in production.
type Lookup func(string) (string, bool)

// Load decodes the YAML file at path into dst (a pointer to a struct) and applies
// the environment overrides. An empty path leaves dst as it is before the
// overrides. Errors name the file or the variable.
func Load(path string, dst any, env Lookup) error {
	var b []byte
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if err := Decode(b, dst); err != nil {
		if path != "" {
			return fmt.Errorf("%s: %w", path, err)
		}
		return err
	}
	return ApplyEnv(dst, env)
}

// Decode decodes YAML into dst, refusing unknown keys. Empty input is no error.
func Decode(b []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// EnvKeys lists the environment overrides of the configuration type T points
// to, in file order: scalars and string lists at any depth of nested sections.
// Lists of sections (targets, rules) are configured in the file only.
func EnvKeys(dst any) []string {
	var keys []string
	for _, o := range Overrides(dst) {
		keys = append(keys, o.Env)
	}
	return keys
}

// Override is one environment variable and the key it sets.
type Override struct {
	Env string // TAPLINE_KAFKA_BROKERS
	Key string // kafka.brokers
}

// Overrides lists EnvKeys with the keys they set.
func Overrides(dst any) []Override {
	var out []Override
	walk(reflect.TypeOf(dst).Elem(), nil, func(name string, _ []int, path []string) {
		out = append(out, Override{Env: name, Key: strings.Join(path, ".")})
	})
	return out
}

// ApplyEnv sets the fields of dst whose override variable is set. Lists are
// comma-separated; durations are Go durations (10s, 1m).
func ApplyEnv(dst any, env Lookup) error {
	if env == nil {
		return nil
	}
	var errs []string
	root := reflect.ValueOf(dst).Elem()
	walk(root.Type(), nil, func(name string, index []int, _ []string) {
		raw, ok := env(name)
		if !ok {
			return
		}
		if err := set(fieldAt(root, index), raw); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: %v", name, raw, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// walk calls fn for each overridable field. Inline structs (yaml ",inline") add
// their keys to the enclosing section.
func walk(t reflect.Type, index []int, fn func(name string, index []int, path []string), path ...string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if opts == "inline" && ft.Kind() == reflect.Struct {
			walk(ft, idx, fn, path...)
			continue
		}
		if name == "" {
			continue
		}
		p := append(append([]string(nil), path...), name)
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			walk(ft, idx, fn, p...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.String:
		case ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map || ft.Kind() == reflect.Func || ft.Kind() == reflect.Interface:
		default:
			fn(EnvPrefix+strings.ToUpper(strings.Join(p, "_")), idx, p)
		}
	}
}

// fieldAt walks index from v, allocating nil pointers on the way (an override can
// create a section the file lacks).
func fieldAt(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		v = deref(v).Field(i)
	}
	return deref(v)
}

func deref(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Pointer {
		return v
	}
	if v.IsNil() {
		v.Set(reflect.New(v.Type().Elem()))
	}
	return v.Elem()
}

func set(v reflect.Value, raw string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("not a duration (e.g. 10s, 1m)")
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return errors.New("not an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return errors.New("not a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(raw, v.Type().Bits())
		if err != nil {
			return errors.New("not a number")
		}
		v.SetFloat(n)
	case reflect.Slice:
		items := reflect.MakeSlice(v.Type(), 0, 4)
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = reflect.Append(items, reflect.ValueOf(s).Convert(v.Type().Elem()))
			}
		}
		v.Set(items)
	default:
		return errors.New("cannot be set from the environment")
	}
	return nil
}
