package mask_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/protocol"
)

// Secrets only the detectors find, as they would be written in a statement.
var fragSecrets = []string{
	"alice.smith@example.org",
	"4111 1111 1111 1111",
	"4111111111111111",
	"AKIAIOSFODNN7EXAMPLE",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}

// maskFragments masks msg cut at the given offsets into fragment frames, saving
// and restoring the conversation between fragments as a restarted processor
// would, and returns the masked fragments joined and the counts.
func maskFragments(t *testing.T, r protocol.MaskRules, kind string, msg []byte, cuts ...int) ([]byte, protocol.Counts) {
	t.Helper()
	c := &postgres.Conversation{}
	counts := protocol.Counts{}
	var out []byte
	prev := 0
	for i, cut := range append(cuts, len(msg)) {
		f := &schemas.Frame{Protocol: schemas.Postgres, Kind: kind, Direction: schemas.Client,
			Payload: append([]byte(nil), msg[prev:cut]...), Fragment: int32(i), Final: cut == len(msg)}
		got := c.Mask(f, r, counts)
		if len(got) != cut-prev {
			t.Fatalf("fragment %d changed length: %d → %d", i, cut-prev, len(got))
		}
		out = append(out, got...)
		state, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c = &postgres.Conversation{}
		if err := json.Unmarshal(state, c); err != nil {
			t.Fatal(err)
		}
		if !f.Final && bytes.Contains(state, []byte("alice")) {
			t.Fatalf("state holds unmasked bytes: %s", state)
		}
		prev = cut
	}
	return out, counts
}

// pgMessage encodes one Postgres wire message.
func pgMessage(t testing.TB, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func realRules(t *testing.T) protocol.MaskRules {
	t.Helper()
	m, err := mask.New(mask.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Rules("db")
}

// A detector-only secret cut by a fragment boundary at any byte, in a Query,
// in CopyData and in a DataRow, is masked in every fragment: no byte of it is left.
func TestFragmentBoundaryAcrossSecret(t *testing.T) {
	r := realRules(t)
	for _, secret := range fragSecrets {
		for _, kind := range []string{postgres.Query, postgres.CopyData, postgres.DataRow} {
			var whole []byte
			text := "SELECT note FROM t WHERE note = 'see " + secret + " now' AND id = 1"
			switch kind {
			case postgres.Query:
				whole = pgMessage(t, &pgproto3.Query{String: text})
			case postgres.CopyData:
				whole = pgMessage(t, &pgproto3.CopyData{Data: []byte("1\tsee " + secret + " now\t2\n")})
			case postgres.DataRow:
				whole = pgMessage(t, &pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("see " + secret + " now"), []byte("x12")}})
			}
			at := bytes.Index(whole, []byte(secret))
			for cut := at - 2; cut <= at+len(secret)+2; cut++ {
				for _, cuts := range [][]int{{cut}, {cut, cut + 1}, {postgres.HeaderLen, cut}} {
					if cuts[0] <= 0 || cuts[len(cuts)-1] >= len(whole) || (len(cuts) > 1 && cuts[0] >= cuts[1]) {
						continue
					}
					got, counts := maskFragments(t, r, kind, whole, cuts...)
					for i := at; i < at+len(secret); i++ {
						if got[i] != '*' && whole[i] != ' ' {
							t.Fatalf("%s %q cut at %v: byte %d of the secret kept: %q (counts %v)", kind, secret, cuts, i-at, got, counts)
						}
					}
					if !bytes.HasSuffix(got, whole[len(whole)-3:]) || len(counts) == 0 {
						t.Fatalf("%s cut at %v: %q %v", kind, cuts, got, counts)
					}
				}
			}
		}
	}
}

// A fragment boundary between words masks nothing that is not a secret, and one
// inside a word masks only that word.
func TestFragmentBoundaryOverMasksOneWord(t *testing.T) {
	r := realRules(t)
	text := "SELECT plain words only FROM t"
	whole := pgMessage(t, &pgproto3.Query{String: text})
	at := bytes.Index(whole, []byte("words"))
	got, counts := maskFragments(t, r, postgres.Query, whole, at)
	if !bytes.Equal(got, whole) || len(counts) != 0 {
		t.Errorf("cut before a space: %q %v", got, counts)
	}
	got, counts = maskFragments(t, r, postgres.Query, whole, at+2)
	want := strings.Replace(string(whole), "words", "*****", 1)
	if string(got) != want || counts[postgres.MaskFragmentEdge] != 2 {
		t.Errorf("cut in a word: %q %v", got, counts)
	}
}

// FuzzFragmentText cuts a Query holding a detector-only secret into fragments
// anywhere: lengths hold, and every byte the detectors mask in the whole text
// (separators between a number's groups aside) is masked in the fragments too.
func FuzzFragmentText(f *testing.F) {
	for i, s := range fragSecrets {
		f.Add("see "+s+" now", uint16(4+i), uint16(9+i), uint8(i))
	}
	f.Add("key AKIAIOSFODNN7EXAMPLE, card 4111-1111-1111-1111.", uint16(10), uint16(40), uint8(0))
	m, err := mask.New(mask.Config{})
	if err != nil {
		f.Fatal(err)
	}
	r := m.Rules("db")
	f.Fuzz(func(t *testing.T, text string, cut1, cut2 uint16, pick uint8) {
		text = strings.ReplaceAll(text, "\x00", "")
		if len(text) > 4096 {
			return
		}
		text = "SELECT '" + text + " " + fragSecrets[int(pick)%len(fragSecrets)] + "'"
		whole := pgMessage(t, &pgproto3.Query{String: text})
		a, b := int(cut1)%len(whole), int(cut2)%len(whole)
		if a > b {
			a, b = b, a
		}
		var cuts []int
		for _, c := range []int{a, b} {
			if c > 0 && (len(cuts) == 0 || c > cuts[len(cuts)-1]) {
				cuts = append(cuts, c)
			}
		}
		if len(cuts) == 0 {
			cuts = []int{len(whole) / 2}
		}
		got, _ := maskFragments(t, r, postgres.Query, whole, cuts...)
		ref := r.Text(append([]byte(nil), whole[postgres.HeaderLen:]...), protocol.SameLength, protocol.Counts{})
		for i, ch := range ref {
			// A separator between a number's groups is no part of the secret.
			if ch == '*' && !strings.ContainsRune("* -.", rune(whole[postgres.HeaderLen+i])) && got[postgres.HeaderLen+i] != '*' {
				t.Fatalf("cuts %v: byte %d (%q) masked whole, kept in fragments:\n%q\n%q", cuts, i, whole[postgres.HeaderLen+i], ref, got[postgres.HeaderLen:])
			}
		}
	})
}
