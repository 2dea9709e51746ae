package clickhouse

import (
	"fmt"
	"math"
	"math/big"
	"net"
	"reflect"
	"sort"
	"time"

	"github.com/google/uuid"
)

// Normalize turns a value read from either transport into one of the Result value
// types: nil, string, int64, uint64, float64, bool, time.Time, []any, map[string]any.
func Normalize(v any) any {
	switch x := v.(type) {
	case nil, string, int64, uint64, float64, bool, time.Time:
		return x
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint:
		return uint64(x)
	case float32:
		return float64(x)
	case uuid.UUID:
		return x.String()
	case net.IP:
		return x.String()
	case *big.Int:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return Normalize(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = Normalize(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			out[fmt.Sprint(Normalize(it.Key().Interface()))] = Normalize(it.Value().Interface())
		}
		return out
	}
	if s, ok := v.(fmt.Stringer); ok {
		return s.String() // decimals and the like
	}
	return fmt.Sprint(v)
}

// ScanInto stores a normalized value v into dest, converting between compatible
// types (a UInt8 into *bool for the legacy schema, an Int64 into *uint64, ...).
func ScanInto(dest, v any) error {
	v = Normalize(v)
	switch d := dest.(type) {
	case *any:
		*d = v
		return nil
	case *string:
		s, ok := v.(string)
		if ok {
			*d = s
			return nil
		}
	case *[]byte:
		if s, ok := v.(string); ok {
			*d = []byte(s)
			return nil
		}
	case *int64:
		if n, ok := toInt64(v); ok {
			*d = n
			return nil
		}
	case *int32:
		if n, ok := toInt64(v); ok && n >= math.MinInt32 && n <= math.MaxInt32 {
			*d = int32(n)
			return nil
		}
	case *uint64:
		if n, ok := toInt64(v); ok && n >= 0 {
			*d = uint64(n)
			return nil
		}
		if n, ok := v.(uint64); ok {
			*d = n
			return nil
		}
	case *bool:
		if b, ok := toBool(v); ok {
			*d = b
			return nil
		}
	case *time.Time:
		if t, ok := v.(time.Time); ok {
			*d = t.UTC()
			return nil
		}
	case **time.Time:
		return scanNullable(d, v, func(x any) (time.Time, bool) { t, ok := x.(time.Time); return t.UTC(), ok })
	case **int32:
		return scanNullable(d, v, func(x any) (int32, bool) {
			n, ok := toInt64(x)
			return int32(n), ok && n >= math.MinInt32 && n <= math.MaxInt32
		})
	case **bool:
		return scanNullable(d, v, toBool)
	case *[]string:
		if xs, ok := v.([]any); ok {
			if len(xs) == 0 {
				*d = nil // as the Avro codecs decode an empty array
				return nil
			}
			out := make([]string, 0, len(xs))
			for _, x := range xs {
				s, ok := x.(string)
				if !ok {
					return fmt.Errorf("scan %T into *[]string", x)
				}
				out = append(out, s)
			}
			*d = out
			return nil
		}
	case *[]int64:
		if xs, ok := v.([]any); ok {
			out := make([]int64, 0, len(xs))
			for _, x := range xs {
				n, ok := toInt64(x)
				if !ok {
					return fmt.Errorf("scan %T into *[]int64", x)
				}
				out = append(out, n)
			}
			*d = out
			return nil
		}
	case *map[string]int64:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]int64, len(m))
			for k, x := range m {
				n, ok := toInt64(x)
				if !ok {
					return fmt.Errorf("scan %T into map value", x)
				}
				out[k] = n
			}
			*d = out
			return nil
		}
	default:
		return fmt.Errorf("scan into %T: unsupported destination", dest)
	}
	return fmt.Errorf("scan %T into %T", v, dest)
}

func scanNullable[T any](d **T, v any, conv func(any) (T, bool)) error {
	if v == nil {
		*d = nil
		return nil
	}
	x, ok := conv(v)
	if !ok {
		return fmt.Errorf("scan %T into %T", v, d)
	}
	*d = &x
	return nil
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

func toBool(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case uint64:
		return b != 0, true
	case int64:
		return b != 0, true
	}
	return false, false
}

// SortedKeys returns a map's keys in order, for deterministic encodings.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
