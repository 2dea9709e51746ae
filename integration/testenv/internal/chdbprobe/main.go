// Command chdbprobe prints `SELECT version()` as run by embedded chDB. TestCHDB
// runs it in a child process so that the engine (one per process) never starts
// inside test binaries that merely link testenv.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/tapline/tapline/sinks/clickhouse/chdb/libchdb"
)

func main() {
	c, err := libchdb.Open()
	if err == nil {
		var out []byte
		out, err = c.Query("SELECT version()", "TSV")
		c.Close()
		fmt.Println(strings.TrimSpace(string(out)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chdbprobe:", err)
		os.Exit(1)
	}
}
