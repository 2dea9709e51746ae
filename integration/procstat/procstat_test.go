package procstat

import (
	"os"
	"testing"
)

func TestParseCommWithSpacesAndParentheses(t *testing.T) {
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 4 0 123456 1000 10 18446744073709551615\n"
	pid, st, ok := Parse([]byte(line))
	if !ok || pid != 4242 || st != (Stat{PPID: 17, Own: 280, Reaped: 10, Start: 123456}) {
		t.Fatalf("Parse = %d %+v %v", pid, st, ok)
	}
	for _, bad := range []string{"", "4242 my proc S 1", "x (a) S 1", "4242 (a) S 1 2 3", "4242 (a) S 17 1 1 0 -1 0 0 0 0 0 x 30 7 3 20 0 4 0 9"} {
		if _, _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestReadThisProcess(t *testing.T) {
	st, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() || st.Start <= 0 {
		t.Fatalf("Read(self) = %+v, parent %d", st, os.Getppid())
	}
}
