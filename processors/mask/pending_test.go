package mask

import "testing"

// Pending holds back what may be the start of a secret and nothing that ends a
// line or a word.
func TestPending(t *testing.T) {
	for _, c := range []struct {
		text, pending string
	}{
		{"ls -la\r\n", ""},
		{"user@host:~$ ", ""},
		{"export TOKEN=ghp_abc", "TOKEN=ghp_abc"},
		{"mail bob@exa", "bob@exa"},
		{"card 4111 1111 ", " 4111 1111 "},
		{"call (", " ("},
		{"iban DE89 3704", " DE89 3704"},
		{"ALTER ROLE x PASSWORD 'two wor", "'two wor"},
		{"psql postgres://app:pa", "postgres://app:pa"},
		{"done.\nnext line", "line"},
		{"it's", "'s"},
	} {
		if got := Pending([]byte(c.text)); got != len(c.pending) {
			t.Errorf("Pending(%q) = %d, want %d (%q)", c.text, got, len(c.pending), c.pending)
		}
	}
	long := make([]byte, 3*PendingBytes)
	for i := range long {
		long[i] = 'a'
	}
	if got := Pending(long); got != PendingBytes {
		t.Errorf("Pending of a %d-byte token = %d, want the bound %d", len(long), got, PendingBytes)
	}
}
