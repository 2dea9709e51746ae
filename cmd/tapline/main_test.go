package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionPrintsVersionAndCommit(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), version) || !strings.Contains(out.String(), commit) {
		t.Fatalf("version output %q lacks version or commit", out.String())
	}
}

func TestEveryDesignedSubcommandIsRegistered(t *testing.T) {
	root := newRoot()
	for _, name := range []string{"gateway", "process", "sink", "query", "dev", "sessions", "replay", "verify", "token", "version"} {
		c, _, err := root.Find([]string{name})
		if err != nil || c == root {
			t.Errorf("subcommand %q missing", name)
		}
	}
}
