// Package layout checks the repository's shape: data flows one way
// (ingest → processors → sinks → query), and no package imports one further
// upstream.
package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tapline/tapline/"

// stage orders the top-level folders along the data flow. Folders not listed
// (auth, config, keyfile, kafkaconn, metricsserver) are shared below all stages;
// cmd, deploy and integration wire or test everything and are not checked.
var stage = map[string]int{"schemas": 0, "ingest": 1, "processors": 2, "sinks": 3, "query": 4}

var shared = map[string]bool{"auth": true, "config": true, "keyfile": true, "kafkaconn": true, "metricsserver": true}

func TestImportsFlowOneWay(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		from := top(filepath.ToSlash(rel))
		if _, ok := stage[from]; !ok && !shared[from] {
			return nil
		}
		checked++
		for _, imp := range imports(t, path) {
			if why := reachesBack(from, top(imp)); why != "" {
				t.Errorf("%s imports %s: %s", rel, imp, why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d files under %s: is the walk looking at the repository?", checked, root)
	}
}

// reachesBack says why an import from folder `from` of folder `to` breaks the
// one-way rule, or "" if it does not. Tests may import integration's helpers.
func reachesBack(from, to string) string {
	switch {
	case to == "" || to == from || to == "integration":
		return ""
	case shared[from] && !shared[to]:
		return "shared packages sit below every stage"
	case shared[to]:
		return ""
	case to == "cmd" || to == "deploy":
		return "only wiring imports cmd or deploy"
	}
	fs, ts := stage[from], stage[to]
	if ts > fs {
		return from + " is upstream of " + to
	}
	return ""
}

// top is the module folder a file path or a module import path starts with.
func top(p string) string {
	return strings.SplitN(strings.TrimPrefix(p, module), "/", 2)[0]
}

func imports(t *testing.T, path string) []string {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range f.Imports {
		p, _ := strconv.Unquote(s.Path.Value)
		if strings.HasPrefix(p, module) {
			out = append(out, p)
		}
	}
	return out
}

func TestReachesBack(t *testing.T) {
	for _, c := range []struct {
		from, to string
		bad      bool
	}{
		{"query", "sinks", false}, {"processors", "schemas", false}, {"query", "auth", false},
		{"ingest", "processors", true}, {"sinks", "query", true}, {"schemas", "ingest", true},
		{"auth", "ingest", true}, {"processors", "cmd", true}, {"ingest", "integration", false},
	} {
		if got := reachesBack(c.from, c.to) != ""; got != c.bad {
			t.Errorf("%s -> %s: flagged %v, want %v", c.from, c.to, got, c.bad)
		}
	}
}
