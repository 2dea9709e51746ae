//go:build !chdb

package chdb

import (
	"os"
	"os/exec"
	"testing"

	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// TestWithCHDB runs this package's chDB tests (build tag chdb) in a child `go test`
// with CHDB_LIB_PATH set: chdb-go loads libchdb.so when the test binary starts and
// panics without it, so a plain `go test ./...` cannot link it.
func TestWithCHDB(t *testing.T) {
	lib := storetest.Env(t, "CHDB_LIB_PATH")
	args := []string{"test", "-tags", "chdb", "-count=1", "-timeout", "10m"}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	cmd := exec.Command(storetest.GoTool(), append(args, ".")...)
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	out, err := cmd.CombinedOutput()
	t.Logf("go test -tags chdb:\n%s", out)
	if err != nil {
		t.Fatalf("chDB tests failed: %v", err)
	}
}
