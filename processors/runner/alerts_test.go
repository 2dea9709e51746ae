package runner

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// The documented alert rules use only metrics the processor exposes: a renamed metric
// would otherwise leave an alert that never fires.
func TestAlertRulesUseExistingMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	// Vectors show only once they have a child.
	m.alerts.WithLabelValues("x")
	m.transactions.WithLabelValues("x")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, mf := range mfs {
		exposed[mf.GetName()] = true
	}
	name := regexp.MustCompile(`\btapline_[a-z0-9_]+`)
	rules := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			rules++
			used := name.FindAllString(r.Expr, -1)
			if r.Alert == "" || len(used) == 0 {
				t.Errorf("rule %q (%s): needs an alert name and a tapline metric", r.Alert, r.Expr)
			}
			for _, n := range used {
				if !exposed[n] {
					t.Errorf("rule %s uses %s, which the processor does not expose", r.Alert, n)
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no rules in alerts.yaml")
	}
	for _, want := range []string{MetricDeadLetters, MetricFrameFailures} {
		if !exposed[want] {
			t.Errorf("%s not exposed", want)
		}
	}
}
