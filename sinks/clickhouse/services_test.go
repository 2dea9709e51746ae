package clickhouse_test

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// serviceEnv returns an endpoint written by integration/services.sh, skipping the
// test when it is missing (failing under CI).
func serviceEnv(t *testing.T, key string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test; skipped with -short")
	}
	if v := os.Getenv(key); v != "" {
		return v
	}
	path := os.Getenv("TAPLINE_SERVICES_ENV")
	if path == "" {
		_, file, _, _ := runtime.Caller(0)
		path = filepath.Join(filepath.Dir(file), "..", "..", ".services", "env")
	}
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if ok && k == key {
				return strings.Trim(v, "'")
			}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not available (run integration/services.sh up)", key)
	}
	t.Skipf("%s not available (run integration/services.sh up)", key)
	return ""
}
