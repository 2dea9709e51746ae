package client

import (
	"os/exec"
	"strings"
	"testing"
)

// Programs that only call the API import this package: it must not drag in the
// server's store, Kafka or OIDC libraries (and their size, cgo-free or not).
func TestClientDependsOnNoServerLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/ClickHouse/", "github.com/twmb/franz-go", "github.com/coreos/go-oidc",
			"github.com/tapline/tapline/sinks/", "github.com/tapline/tapline/ingest/", "github.com/tapline/tapline/processors/"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("query/client depends on %s", d)
			}
		}
	}
}
