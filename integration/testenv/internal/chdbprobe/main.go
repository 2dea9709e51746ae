// Command chdbprobe prints `SELECT version()` as run by chDB through chdb-go.
// TestCHDB runs it in a child process because chdb-go loads libchdb.so in a
// package init (and panics without it), which must not happen in test
// binaries that merely link testenv.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/chdb-io/chdb-go/chdb"
)

func main() {
	r, err := chdb.Query("SELECT version()", "TSV")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chdbprobe:", err)
		os.Exit(1)
	}
	fmt.Println(strings.TrimSpace(r.String()))
}
