package schemas

import (
	"bytes"
	"encoding/json"
	"testing"
)

// encodingJSON is encoding/json's encoding of s, with or without HTML escaping.
func encodingJSON(t *testing.T, s string, escapeHTML bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(escapeHTML)
	if err := e.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkJSONString(t *testing.T, s string) {
	t.Helper()
	for _, html := range []bool{true, false} {
		if got, want := AppendJSONString(nil, s, html), encodingJSON(t, s, html); !bytes.Equal(got, want) {
			t.Fatalf("%q (HTML escaping %v): got %s, encoding/json writes %s", s, html, got, want)
		}
	}
}

func TestAppendJSONStringIsEncodingJSONs(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "\n\r\t\b\f\x00\x1f\x7f", "<a href='x'>&amp;</a>",
		"é 世界 🙂", "bad \xff \xc3 end", "\u2028\u2029", string(rune(0xfffd))} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("v\x00\"\\\xff\u2028<>&\b\f")
	f.Fuzz(checkJSONString)
}
