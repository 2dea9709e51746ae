//go:build !chdb

package e2e

import (
	"os"
	"os/exec"
	"testing"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

// TestWithCHDB runs this package's tests (build tag chdb) in a child `go test`
// with CHDB_LIB_PATH set, so a plain `go test ./...` runs them too. `make test`
// builds with the tag and runs them directly.
func TestWithCHDB(t *testing.T) {
	lib := testenv.CHDBLib(t)
	args := []string{"test", "-tags", "chdb", "-count=1", "-timeout", "5m"}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	cmd := exec.Command(storetest.GoTool(), append(args, ".")...)
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	out, err := cmd.CombinedOutput()
	t.Logf("go test -tags chdb:\n%s", out)
	if err != nil {
		t.Fatalf("end-to-end tests failed: %v", err)
	}
}
