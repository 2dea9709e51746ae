//go:build !chdb

package chdb

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// TestWithCHDB runs this package's chDB tests (build tag chdb) in a child `go test`
// with CHDB_LIB_PATH set, so a plain `go test ./...` runs them too.
func TestWithCHDB(t *testing.T) {
	args := []string{"-count=1", "-timeout", "10m"}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	out, err := goTestCHDB(t, args...)
	t.Logf("go test -tags chdb:\n%s", out)
	if err != nil {
		t.Fatalf("chDB tests failed: %v", err)
	}
}

// BenchmarkWithCHDB runs this package's chDB benchmarks once in a child go test
// (see TestWithCHDB), so `make bench` reports them too.
func BenchmarkWithCHDB(b *testing.B) {
	out, err := goTestCHDB(b, "-run", "^$", "-bench", ".", "-benchtime", "1x")
	if err != nil {
		b.Fatalf("chDB benchmarks failed: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			b.Log(line)
		}
	}
}

func goTestCHDB(t testing.TB, args ...string) ([]byte, error) {
	lib := testenv.CHDBLib(t)
	cmd := exec.Command(storetest.GoTool(), append(append([]string{"test", "-tags", "chdb"}, args...), ".")...)
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	return cmd.CombinedOutput()
}
