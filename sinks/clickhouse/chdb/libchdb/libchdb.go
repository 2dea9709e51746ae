// Package libchdb binds the few functions of libchdb.so that the embedded store
// uses, loading the library on first use rather than at program start. chdb-go
// loads it in a package init and panics when it is missing, which took every
// subcommand of a chDB-enabled binary down with it, `tapline token` included; here
// only opening a store needs the library, and a missing one is an error that says
// what to set.
package libchdb

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// EnvPath names libchdb.so.
const EnvPath = "CHDB_LIB_PATH"

// defaultPaths are tried, in order, when CHDB_LIB_PATH is unset.
var defaultPaths = []string{"/usr/local/lib/libchdb.so", "/usr/lib/libchdb.so"}

// C structs that are opaque handles holding one pointer.
type (
	connection struct{ internal unsafe.Pointer }
	result     struct{ internal unsafe.Pointer }
)

var (
	loadOnce sync.Once
	loadErr  error

	connect       func(argc int, argv []*byte) *connection
	closeConn     func(c *connection)
	query         func(conn unsafe.Pointer, query, format string) *result
	destroyResult func(r *result)
	resultBuffer  func(r *result) *byte
	resultLength  func(r *result) uint
	resultError   func(r *result) string
)

// Load loads libchdb.so once; later calls return the first outcome.
func Load() error {
	loadOnce.Do(func() { loadErr = load() })
	return loadErr
}

func load() error {
	path, err := findLibrary()
	if err != nil {
		return err
	}
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("load %s: %w (set %s to the path of libchdb.so)", path, err, EnvPath)
	}
	return register(lib, path)
}

func findLibrary() (string, error) {
	if p := os.Getenv(EnvPath); p != "" {
		return p, nil
	}
	for _, p := range defaultPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("libchdb.so not found: set %s to its path (make dev and integration/services.sh fetch it; "+
		"or use a ClickHouse server with clickhouse.addr)", EnvPath)
}

// register binds the symbols; purego panics on a missing one, which is an error
// here (a libchdb.so too old for the connection API).
func register(lib uintptr, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s lacks a function tapline needs (%v): use libchdb 3.0 or later", path, r)
		}
	}()
	purego.RegisterLibFunc(&connect, lib, "chdb_connect")
	purego.RegisterLibFunc(&closeConn, lib, "chdb_close_conn")
	purego.RegisterLibFunc(&query, lib, "chdb_query")
	purego.RegisterLibFunc(&destroyResult, lib, "chdb_destroy_query_result")
	purego.RegisterLibFunc(&resultBuffer, lib, "chdb_result_buffer")
	purego.RegisterLibFunc(&resultLength, lib, "chdb_result_length")
	purego.RegisterLibFunc(&resultError, lib, "chdb_result_error")
	return nil
}

// Conn is a chDB connection. chDB allows one per process; callers serialise
// queries on it.
type Conn struct {
	c *connection
}

// Open loads the library if needed and connects with clickhouse-local style
// arguments (e.g. "--path=/data", "--config-file=/etc/x.xml").
func Open(args ...string) (*Conn, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	argv := append([]string{"clickhouse"}, args...)
	cargv := make([]*byte, len(argv))
	for i, a := range argv {
		b := append([]byte(a), 0)
		cargv[i] = &b[0]
	}
	c := connect(len(cargv), cargv)
	if c == nil {
		return nil, errors.New("chdb: could not connect (see the engine's messages above)")
	}
	return &Conn{c: c}, nil
}

// Query runs one statement and returns a copy of its output in format.
func (c *Conn) Query(sql, format string) ([]byte, error) {
	if c.c == nil {
		return nil, errors.New("chdb: connection closed")
	}
	r := query(c.c.internal, sql, format)
	if r == nil {
		return nil, errors.New("chdb: query returned no result")
	}
	defer destroyResult(r)
	if msg := resultError(r); msg != "" {
		return nil, errors.New(msg)
	}
	buf, n := resultBuffer(r), resultLength(r)
	if buf == nil || n == 0 {
		return nil, nil
	}
	return append([]byte(nil), unsafe.Slice(buf, n)...), nil
}

// Close ends the connection; the process may open a new one after.
func (c *Conn) Close() {
	if c.c != nil {
		closeConn(c.c)
		c.c = nil
	}
}
