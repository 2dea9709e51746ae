package protocol_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Protocol knowledge lives in the protocol packages and their edges; everything
// else asks the registry. This test fails when a comparison or a switch case on a
// protocol name appears anywhere else.
var protocolNames = map[string]bool{
	"Postgres": true, "SSH": true, "HTTP": true, "Kubernetes": true, // schemas.X constants
	// Literals as configuration and the API spell them ("http" is left out: it is
	// also a URL scheme).
	"postgres": true, "ssh": true, "kubernetes": true,
	"POSTGRES": true, "KUBERNETES": true,
}

// allowed are the places that legitimately name protocols, with why.
var allowed = map[string]string{
	"schemas/postgres":   "the protocol package itself",
	"schemas/ssh":        "the protocol package itself",
	"schemas/http":       "the protocol package itself",
	"schemas/kubernetes": "the protocol package itself",
	"ingest/postgres":    "the edge",
	"ingest/ssh":         "the edge",
	"ingest/http":        "the edge",
	"ingest/kubernetes":  "the edge",
	// Each edge's wiring in the gateway picks the targets of its own protocol.
	"ingest/gateway/gateway.go":    "the Postgres edge's wiring",
	"ingest/gateway/ssh.go":        "the SSH edge's wiring",
	"ingest/gateway/http.go":       "the HTTP edge's wiring (it also serves Kubernetes targets)",
	"ingest/gateway/kubernetes.go": "the Kubernetes edge's wiring",
	"schemas/sessiontest":          "builds sessions of each protocol for tests",
}

func TestNoProtocolSwitchOutsideProtocolPackages(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..")) // tests run in their package's directory
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "integration" || d.Name() == "deploy" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || isAllowed(filepath.ToSlash(rel)) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (names(n.X) || names(n.Y)) {
					t.Errorf("%s: compares with a protocol name; ask the registry (schemas/protocol)", fset.Position(n.Pos()))
				}
			case *ast.CaseClause:
				for _, e := range n.List {
					if names(e) {
						t.Errorf("%s: switches on a protocol name; ask the registry (schemas/protocol)", fset.Position(e.Pos()))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isAllowed(rel string) bool {
	for p := range allowed {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// names reports whether e is schemas.<Protocol> or a protocol name literal.
func names(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "schemas" && protocolNames[e.Sel.Name] && e.Sel.Name[0] >= 'A' && e.Sel.Name[0] <= 'Z'
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return e.Kind == token.STRING && err == nil && protocolNames[s]
	}
	return false
}
