package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// filled sets every field of a Record from s, i and f through reflection, so
// that a field added to Record and not to appendJSON fails the comparison.
func filled(s string, i int64, f float64, ok bool) Record {
	var r Record
	v := reflect.ValueOf(&r).Elem()
	for k := range v.NumField() {
		fv := v.Field(k)
		switch fv.Interface().(type) {
		case string:
			fv.SetString(s)
		case int64:
			fv.SetInt(i)
		case []string:
			fv.Set(reflect.ValueOf([]string{s, "", s + "2"}))
		case *int64:
			fv.Set(reflect.ValueOf(&i))
		case *int32:
			n := int32(i)
			fv.Set(reflect.ValueOf(&n))
		case *float64:
			fv.Set(reflect.ValueOf(&f))
		case *bool:
			fv.Set(reflect.ValueOf(&ok))
		default:
			panic("filled: no value for field " + v.Type().Field(k).Name)
		}
	}
	return r
}

func sameAsEncodingJSON(t *testing.T, r *Record) {
	t.Helper()
	want, werr := json.Marshal(r)
	got, gerr := r.Marshal()
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("errors differ: encoding/json %v, Marshal %v", werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	for _, r := range []Record{
		{},
		{Schema: Schema, Type: TypeCommand, UserGroups: []string{}, CommandParams: nil},
		filled("a", 1, 1.5, true),
		filled("<x>&\"y\"\\\n\t\x01\u2028\xff", -7, 0, false),
		filled("é", math.MaxInt64, 1e21, true),
		filled("", 0, 1e-7, false),
		filled("z", math.MinInt64, -123456.789, true),
		filled("q", 3, 5e-324, true),
	} {
		sameAsEncodingJSON(t, &r)
	}
	nan := math.NaN()
	if _, err := (&Record{DurationMS: &nan}).Marshal(); err == nil {
		t.Fatal("a NaN duration marshalled without error")
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add("ssh", int64(4), 12.25, true)
	f.Add("<script>\u2029", int64(-1), 1e-9, false)
	f.Add("\xff\xfe", int64(0), 0.0, true)
	f.Fuzz(func(t *testing.T, s string, i int64, d float64, ok bool) {
		if math.IsNaN(d) || math.IsInf(d, 0) {
			return
		}
		r := filled(s, i, d, ok)
		sameAsEncodingJSON(t, &r)
	})
}
