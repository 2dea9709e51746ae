package gateway

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment override: TAPLINE_ + the YAML key path in
// upper case, joined with "_" (kafka.brokers -> TAPLINE_KAFKA_BROKERS).
const EnvPrefix = "TAPLINE_"

// Overrides apply to scalars and string lists in the top-level sections; targets
// are only configured in the file. Lists are comma-separated.

var durationType = reflect.TypeFor[time.Duration]()

// EnvKeys lists every environment variable the gateway reads as an override,
// in file order.
func EnvKeys() []string {
	var keys []string
	walkEnv(reflect.TypeFor[Config](), nil, func(name string, _ []int) { keys = append(keys, name) })
	return keys
}

// walkEnv calls fn for each overridable field: scalars, []string, and fields of
// nested structs (or pointers to structs). Slices of structs are skipped.
func walkEnv(t reflect.Type, index []int, fn func(name string, index []int), path ...string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		p := append(append([]string(nil), path...), tag)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			walkEnv(ft, idx, fn, p...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.String:
			// targets and other structured lists: file only
		case ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map || ft.Kind() == reflect.Func:
		default:
			fn(EnvPrefix+strings.ToUpper(strings.Join(p, "_")), idx)
		}
	}
}

// applyEnv sets the fields whose override variable is set.
func applyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	var errs []string
	root := reflect.ValueOf(cfg).Elem()
	walkEnv(root.Type(), nil, func(name string, index []int) {
		raw, ok := lookup(name)
		if !ok {
			return
		}
		if err := setField(fieldAt(root, index), raw); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: %v", name, raw, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// fieldAt walks index from v, allocating nil struct pointers on the way (an
// override can create a section the file lacks).
func fieldAt(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v
}

func setField(v reflect.Value, raw string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 10s, 1m)")
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
			return fmt.Errorf("not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(n)
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
