package schemas

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFrameValuesRoundTrip(t *testing.T) {
	frames := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{0xff}, 300)}
	var v []byte
	for _, f := range frames {
		v = AppendFrameValue(v, f)
	}
	got, err := FrameValues(v, "3")
	if err != nil || len(got) != 3 {
		t.Fatalf("FrameValues = %d values, %v", len(got), err)
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d = %q, want %q", i, got[i], frames[i])
		}
	}
	if got, err := FrameValues([]byte("single"), ""); err != nil || len(got) != 1 || string(got[0]) != "single" {
		t.Fatalf("a record without the header is one frame: %q, %v", got, err)
	}
}

func TestFrameValuesRejectsBrokenRecords(t *testing.T) {
	two := AppendFrameValue(AppendFrameValue(nil, []byte("ab")), []byte("cd"))
	for name, c := range map[string]struct {
		value []byte
		count string
	}{
		"count not a number":   {two, "two"},
		"count zero":           {two, "0"},
		"count above the data": {two, "3"},
		"count below the data": {two, "1"},
		"cut short":            {two[:len(two)-1], "2"},
		"length overflows":     {[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "1"},
		"huge count":           {two, "1000000000000"},
	} {
		if _, err := FrameValues(c.value, c.count); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFrameRecordIsTheFrameAlone(t *testing.T) {
	rec := &kgo.Record{Key: []byte("s"), Offset: 7, Value: AppendFrameValue(AppendFrameValue(nil, []byte("a")), []byte("b")),
		Headers: []kgo.RecordHeader{{Key: "x", Value: []byte("y")}, {Key: HeaderFrames, Value: []byte("2")}}}
	vals, err := RecordFrameValues(rec)
	if err != nil {
		t.Fatal(err)
	}
	one := FrameRecord(rec, vals, 1)
	if string(one.Value) != "b" || one.Offset != 7 || len(one.Headers) != 1 || one.Headers[0].Key != "x" {
		t.Fatalf("frame record = %+v", one)
	}
	if got, _ := RecordFrameValues(one); len(got) != 1 || string(got[0]) != "b" {
		t.Fatalf("the frame's own record reads as %q", got)
	}
	single := &kgo.Record{Value: []byte("v")}
	if FrameRecord(single, [][]byte{single.Value}, 0) != single {
		t.Fatal("a record of one frame is its own frame record")
	}
}

// FuzzFrameValues: any value and count either split into values that
// re-encode to the same bytes, or fail; nothing panics.
func FuzzFrameValues(f *testing.F) {
	f.Add(AppendFrameValue(AppendFrameValue(nil, []byte("ab")), []byte("cd")), "2")
	f.Add([]byte{0x80}, "1")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, value []byte, count string) {
		vals, err := FrameValues(value, count)
		if err != nil {
			return
		}
		if count == "" {
			if len(vals) != 1 || !bytes.Equal(vals[0], value) {
				t.Fatal("a record without the header must be its value")
			}
			return
		}
		if n, _ := strconv.Atoi(count); n != len(vals) {
			t.Fatalf("%d values for count %q", len(vals), count)
		}
		// Every value is preceded by at least a byte of length, and the values
		// with their lengths fill the record exactly.
		total := 0
		for _, v := range vals {
			total += len(v) + 1
		}
		if total > len(value) {
			t.Fatalf("%d values of %d bytes with lengths in a record of %d", len(vals), total, len(value))
		}
		if last := vals[len(vals)-1]; len(last) > 0 && &last[len(last)-1] != &value[len(value)-1] {
			t.Fatal("the last value does not end the record")
		}
	})
}
