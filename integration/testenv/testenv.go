// Package testenv hands the endpoints of the real test services to integration
// tests: Kafka, PostgreSQL, an OpenSSH server, a ClickHouse server and the chDB
// library, all started by `make services-up` (integration/services.sh up; see
// docs/services.md).
//
// Each accessor takes the test, and either returns a working endpoint or ends
// the test:
//
//	func TestSomething(t *testing.T) {
//		brokers := testenv.Kafka(t)    // []string{"127.0.0.1:PORT"}
//		pg := testenv.Postgres(t)      // pg.GWDSN(), pg.AdminDSN(), pg.Log, ...
//		target := testenv.SSH(t)       // target.ClientConfig(t), target.Addr()
//		ch := testenv.ClickHouse(t)    // ch.Addr (native), ch.HTTP
//		lib := testenv.CHDBLib(t)      // path of libchdb.so
//		b := testenv.PrivateKafka(t)   // a broker of the test's own: b.Stop(), b.Start()
//		...
//	}
//
// The rules are the same for every accessor:
//   - under `go test -short` the test is skipped ("integration: needs <service>");
//   - when the service is not set up or not reachable, the test is skipped with
//     a hint to run `make services-up`, or fails with that hint when the CI
//     environment variable is non-empty (CI must never skip them silently).
//
// Endpoints are read from environment variables first (TAPLINE_KAFKA_BROKERS,
// TAPLINE_PG_PORT, ...), then from the file named by TAPLINE_SERVICES_ENV, then
// from <repo root>/.services/env (the repo root is the nearest directory above
// the working directory holding go.mod).
//
// Embedded chDB loads libchdb.so from CHDB_LIB_PATH when the first store opens
// (the Makefile exports it from the env file). CHDBLib returns the path for tests
// that start such a binary themselves.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hint is the command that sets the services up.
const Hint = "make services-up"

var (
	fileOnce sync.Once
	fileVals map[string]string
	filePath string
	fileErr  error
)

// EnvFile is the services env file testenv reads (it may not exist).
func EnvFile() string {
	loadFile()
	return filePath
}

func loadFile() {
	fileOnce.Do(func() {
		filePath = os.Getenv("TAPLINE_SERVICES_ENV")
		if filePath == "" {
			root, err := RepoRoot()
			if err != nil {
				fileErr = err
				return
			}
			filePath = filepath.Join(root, ".services", "env")
		}
		fileVals, fileErr = ParseEnvFile(filePath)
	})
}

// RepoRoot is the nearest directory at or above the working directory that
// holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ParseEnvFile reads KEY=VALUE lines as written by integration/services.sh:
// blank lines and lines starting with # are ignored, and a value wrapped in
// single or double quotes is unwrapped (single-quoted values may contain the
// shell's escaped-quote sequence, which is undone).
func ParseEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals[strings.TrimSpace(k)] = unquote(v)
	}
	return vals, sc.Err()
}

func unquote(v string) string {
	if len(v) >= 2 {
		switch {
		case v[0] == '\'' && v[len(v)-1] == '\'':
			return strings.ReplaceAll(v[1:len(v)-1], `'\''`, `'`)
		case v[0] == '"' && v[len(v)-1] == '"':
			if s, err := strconv.Unquote(v); err == nil {
				return s
			}
			return v[1 : len(v)-1]
		}
	}
	return v
}

// Lookup returns the value of an endpoint key: the environment variable if set,
// else the services env file's.
func Lookup(key string) (string, bool) {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v, true
	}
	loadFile()
	v, ok := fileVals[key]
	return v, ok && v != ""
}

// need returns the values of keys for service, or ends the test as the
// package doc says.
func need(t testing.TB, service string, keys ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration: needs %s (skipped under -short)", service)
	}
	vals := make([]string, len(keys))
	var missing []string
	for i, k := range keys {
		v, ok := Lookup(k)
		if !ok {
			missing = append(missing, k)
		}
		vals[i] = v
	}
	if len(missing) > 0 {
		where := "no env file"
		loadFile()
		if filePath != "" {
			where = "env file " + filePath
			if fileErr != nil {
				where += " unreadable: " + fileErr.Error()
			}
		}
		unavailable(t, "integration: needs %s: %s not set (%s); run `%s`",
			service, strings.Join(missing, ", "), where, Hint)
	}
	return vals
}

// unavailable ends the test: Fatalf under CI, Skipf elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

var (
	reachMu sync.Mutex
	reached = map[string]error{}
)

// reachable checks once per process that addr accepts TCP connections, and
// ends the test when it does not (services set up, then stopped).
func reachable(t testing.TB, service, addr, logKey string) {
	t.Helper()
	reachMu.Lock()
	err, seen := reached[addr]
	if !seen {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		reached[addr] = err
	}
	reachMu.Unlock()
	if err != nil {
		logHint := ""
		if l, ok := Lookup(logKey); ok {
			logHint = "; its log: " + l
		}
		unavailable(t, "integration: needs %s at %s: %v (services stopped? run `%s`%s)",
			service, addr, err, Hint, logHint)
	}
}

// Kafka returns the shared test broker's bootstrap addresses
// (TAPLINE_KAFKA_BROKERS). Tests share it: use unique topic and group names.
func Kafka(t testing.TB) []string {
	t.Helper()
	v := need(t, "kafka", "TAPLINE_KAFKA_BROKERS")[0]
	brokers := strings.Split(v, ",")
	reachable(t, "kafka", brokers[0], "TAPLINE_KAFKA_LOG")
	return brokers
}

// PG is the test PostgreSQL server.
type PG struct {
	Host          string
	Port          int
	AdminUser     string // superuser
	AdminPassword string
	GWUser        string // SCRAM-SHA-256 login the gateway uses; owns database DB
	GWPassword    string
	MD5User       string // login with an md5 password (pg_hba: md5)
	MD5Password   string
	DB            string // "app"
	Bin           string // directory with psql, pgbench, pg_dump, ...
	Log           string // server log; log_statement=all
	SSLCert       string // the server's self-signed certificate (use as root CA)
}

// Addr is host:port.
func (p PG) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// DSN is a postgres:// URL for user/password on database db (DB if empty),
// with sslmode=disable.
func (p PG) DSN(user, password, db string) string {
	if db == "" {
		db = p.DB
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable",
		urlEscape(user), urlEscape(password), p.Addr(), urlEscape(db))
}

// AdminDSN is the superuser's DSN on database DB.
func (p PG) AdminDSN() string { return p.DSN(p.AdminUser, p.AdminPassword, "") }

// GWDSN is the gateway login's DSN on database DB.
func (p PG) GWDSN() string { return p.DSN(p.GWUser, p.GWPassword, "") }

// MD5DSN is the md5 login's DSN on database DB.
func (p PG) MD5DSN() string { return p.DSN(p.MD5User, p.MD5Password, "") }

// TLSDSN is DSN with TLS required and the server certificate verified
// against SSLCert (sslmode=verify-full).
func (p PG) TLSDSN(user, password, db string) string {
	return strings.TrimSuffix(p.DSN(user, password, db), "sslmode=disable") +
		"sslmode=verify-full&sslrootcert=" + urlEscape(p.SSLCert)
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// LogOffset is the server log's current size. Pass it to LogSince or WaitLog
// to look only at what the server logs from now on (the log is long: every
// statement of every test).
func (p PG) LogOffset(t testing.TB) int64 {
	t.Helper()
	fi, err := os.Stat(p.Log)
	if err != nil {
		t.Fatalf("testenv: postgres log: %v", err)
	}
	return fi.Size()
}

// LogSince returns what the server logged after offset.
func (p PG) LogSince(t testing.TB, offset int64) string {
	t.Helper()
	f, err := os.Open(p.Log)
	if err != nil {
		t.Fatalf("testenv: postgres log: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < offset {
		offset = 0 // the log was rotated (services restarted)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		t.Fatalf("testenv: postgres log: %v", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("testenv: postgres log: %v", err)
	}
	return string(data)
}

// WaitLog waits up to timeout for substr to appear in what the server logged
// after offset, and returns that text. The server writes its log
// asynchronously, so a statement shows up a moment after it ran.
func (p PG) WaitLog(t testing.TB, offset int64, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		text := p.LogSince(t, offset)
		if strings.Contains(text, substr) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %q not in %s after %s", substr, p.Log, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Postgres returns the test PostgreSQL server.
func Postgres(t testing.TB) PG {
	t.Helper()
	v := need(t, "postgres", "TAPLINE_PG_HOST", "TAPLINE_PG_PORT",
		"TAPLINE_PG_ADMIN_USER", "TAPLINE_PG_ADMIN_PASSWORD",
		"TAPLINE_PG_GW_USER", "TAPLINE_PG_GW_PASSWORD",
		"TAPLINE_PG_MD5_USER", "TAPLINE_PG_MD5_PASSWORD", "TAPLINE_PG_DB")
	port, err := strconv.Atoi(v[1])
	if err != nil {
		t.Fatalf("testenv: TAPLINE_PG_PORT=%q: %v", v[1], err)
	}
	pg := PG{Host: v[0], Port: port, AdminUser: v[2], AdminPassword: v[3],
		GWUser: v[4], GWPassword: v[5], MD5User: v[6], MD5Password: v[7], DB: v[8]}
	pg.Bin, _ = Lookup("TAPLINE_PG_BIN")
	pg.Log, _ = Lookup("TAPLINE_PG_LOG")
	pg.SSLCert, _ = Lookup("TAPLINE_PG_SSL_CERT")
	reachable(t, "postgres", pg.Addr(), "TAPLINE_PG_LOG")
	return pg
}

// PgBouncerBin is the path of the pgbouncer binary (installed, not started;
// `integration/services.sh pgbouncer start` starts one in front of Postgres).
func PgBouncerBin(t testing.TB) string {
	t.Helper()
	return need(t, "pgbouncer", "TAPLINE_PGBOUNCER_BIN")[0]
}

// CH is the test ClickHouse server.
type CH struct {
	Addr    string // native protocol host:port
	HTTP    string // HTTP interface host:port
	Version string // server version, e.g. 18.16.1
	Log     string
}

// ClickHouse returns the test ClickHouse server (user "default", no password).
func ClickHouse(t testing.TB) CH {
	t.Helper()
	v := need(t, "clickhouse", "TAPLINE_CLICKHOUSE_ADDR", "TAPLINE_CLICKHOUSE_HTTP")
	ch := CH{Addr: v[0], HTTP: v[1]}
	ch.Version, _ = Lookup("TAPLINE_CLICKHOUSE_VERSION")
	ch.Log, _ = Lookup("TAPLINE_CLICKHOUSE_LOG")
	reachable(t, "clickhouse", ch.Addr, "TAPLINE_CLICKHOUSE_LOG")
	return ch
}

// CHDBLib returns the path of libchdb.so (CHDB_LIB_PATH), the library embedded
// chDB loads.
func CHDBLib(t testing.TB) string {
	t.Helper()
	p := need(t, "chdb", "CHDB_LIB_PATH")[0]
	if _, err := os.Stat(p); err != nil {
		unavailable(t, "integration: needs chdb: %v; run `%s`", err, Hint)
	}
	return p
}

var (
	portMu sync.Mutex
	handed = map[int]bool{}
)

// FreePort returns a loopback TCP port that was free a moment ago. It comes
// from 15000-32767, below Linux's ephemeral range, so that an outgoing
// connection cannot take it before the test listens on it (or while a broker
// that listens on it restarts), and it is never handed out twice in one test
// binary.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 200 {
		p := 15000 + rand.IntN(32768-15000)
		if handed[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		handed[p] = true
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: FreePort: %v", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	handed[p] = true
	return p
}

// Hydra returns the Ory Hydra binary (TAPLINE_HYDRA, built by
// `integration/services.sh up hydra`). Tests start their own instance.
func Hydra(t testing.TB) string {
	t.Helper()
	p := need(t, "hydra", "TAPLINE_HYDRA")[0]
	if _, err := os.Stat(p); err != nil {
		unavailable(t, "integration: needs hydra: %v; run `%s`", err, Hint)
	}
	return p
}
