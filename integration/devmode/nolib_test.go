package devmode

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The chDB-enabled binary without CHDB_LIB_PATH: commands that open no store work,
// and one that needs the store says what to set instead of panicking with a stack
// trace.
func TestDevBinaryWithoutCHDBLib(t *testing.T) {
	_, devBin := buildBinaries(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHDB_LIB_PATH=") {
			env = append(env, kv)
		}
	}
	data := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(devBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{{"version"}, {"token", "--data-dir", data, "--sub", "alice", "--groups", "dev"}} {
		out, err := run(args...)
		if err != nil || strings.Contains(out, "panic") {
			t.Errorf("tapline-dev %v without CHDB_LIB_PATH: %v\n%s", args, err, out)
		}
	}
	// ca reads what a gateway generated; here none has run, and it says so.
	if out, _ := run("ca", "--data-dir", data); !strings.Contains(out, "start the gateway") {
		t.Errorf("ca without CHDB_LIB_PATH: %q", out)
	}
	if out, _ := run("token", "--data-dir", data, "--sub", "alice"); strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Errorf("token printed %q, want a JWT", out)
	}
	out, err := run("dev", "--data-dir", data, "--kafka-port", "0", "--pg-port", "0", "--ssh-port", "0", "--http-port", "0", "--api-port", "0")
	if err == nil || !strings.Contains(out, "CHDB_LIB_PATH") || strings.Contains(out, "goroutine ") {
		t.Errorf("tapline-dev dev without CHDB_LIB_PATH: %v, want an error naming CHDB_LIB_PATH and no stack trace:\n%s", err, out)
	}
}
