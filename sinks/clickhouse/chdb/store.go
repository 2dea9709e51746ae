//go:build chdb

// The chdb build tag: only binaries built with -tags chdb link the embedded
// store. libchdb.so (path in CHDB_LIB_PATH) is loaded when the first store opens
// (package libchdb), so commands that need no store run without it. See
// docs/storage.md.

package chdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/chdb/libchdb"
)

// Database is the database the embedded store keeps its tables in, as a server
// store does by default, so raw SQL naming tapline.frames works on both.
const Database = "tapline"

var (
	openMu sync.Mutex
	isOpen bool // chDB allows one session per process
)

// The embedded store is available to clickhouse.Open in binaries that link this
// package.
func init() {
	clickhouse.Embedded.Open = OpenConfig
	clickhouse.Embedded.Load = libchdb.Load
}

// Open opens (creating if needed) an embedded chDB store whose data lives in dir.
// One per process. Call Migrate before writing.
func Open(dir string, cfg clickhouse.Config) (clickhouse.Store, error) {
	return OpenConfig(dir, "", cfg)
}

// OpenConfig is Open with an engine configuration file (see DialConfig).
func OpenConfig(dir, configFile string, cfg clickhouse.Config) (clickhouse.Store, error) {
	c, err := DialConfig(dir, configFile)
	if err != nil {
		return nil, err
	}
	s, err := clickhouse.NewStore(c, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Dial opens the chDB session in dir and returns it as a clickhouse.Conn.
func Dial(dir string) (clickhouse.Conn, error) { return DialConfig(dir, "") }

// DialConfig is Dial with a ClickHouse server configuration file (XML or YAML) for
// the embedded engine, e.g. storage policies (deploy/clickhouse/storage.xml).
func DialConfig(dir, configFile string) (clickhouse.Conn, error) {
	if dir == "" {
		return nil, errors.New("chdb: a data directory is required")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("chdb: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chdb: data directory: %w", err)
	}
	args := []string{"--path=" + dir}
	if configFile != "" {
		args = append(args, "--config-file="+configFile)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if isOpen {
		return nil, errors.New("chdb: a session is already open in this process")
	}
	sess, err := libchdb.Open(args...)
	if err != nil {
		return nil, fmt.Errorf("chdb: open %s: %w", dir, err)
	}
	c := &conn{sess: sess}
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + Database, "USE " + Database} {
		if _, err := c.run(q); err != nil {
			sess.Close()
			return nil, fmt.Errorf("chdb: %s: %w", q, err)
		}
	}
	isOpen = true
	return c, nil
}

// conn runs statements one at a time on the process's chDB session.
type conn struct {
	mu   sync.Mutex
	sess *libchdb.Conn
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// run executes one statement and returns a copy of its RowBinaryWithNamesAndTypes
// output. Callers hold c.mu (or own c exclusively).
func (c *conn) run(sql string) ([]byte, error) {
	out, err := c.sess.Query(sql, "RowBinaryWithNamesAndTypes")
	if err != nil {
		c.drain()
		return nil, err
	}
	return out, nil
}

// drain runs a throwaway query after a failed one. A query that fails while
// producing rows (a result limit, a timeout, throwIf) leaves its partial output in
// the session, and chDB hands it out in front of the next query's result.
func (c *conn) drain() {
	_, _ = c.sess.Query("SELECT 1", "RowBinaryWithNamesAndTypes")
}

// withParams runs sql with query parameters. chDB takes parameters only as session
// state (SET param_x), so they are set right before and cleared right after, under
// the lock; CheckParams guarantees every placeholder was set by this call.
func (c *conn) withParams(ctx context.Context, sql string, params clickhouse.Params) ([]byte, error) {
	if err := clickhouse.CheckParams(sql, params); err != nil {
		return nil, err
	}
	return c.exclusive(ctx, sql, params)
}

func (c *conn) exclusive(ctx context.Context, sql string, params clickhouse.Params) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(params) > 0 {
		names := make([]string, 0, len(params))
		for k := range params {
			if !identRe.MatchString(k) {
				return nil, fmt.Errorf("chdb: query parameter name %q", k)
			}
			names = append(names, k)
		}
		sort.Strings(names)
		set, clear := make([]string, len(names)), make([]string, len(names))
		for i, k := range names {
			set[i] = "param_" + k + " = " + ParamValue(params[k])
			clear[i] = "param_" + k + " = ''"
		}
		if _, err := c.run("SET " + strings.Join(set, ", ")); err != nil {
			return nil, fmt.Errorf("chdb: set parameters: %w", err)
		}
		defer c.run("SET " + strings.Join(clear, ", ")) //nolint:errcheck // best effort; CheckParams guards reuse
	}
	return c.run(sql)
}

func (c *conn) Exec(ctx context.Context, sql string, params clickhouse.Params) error {
	_, err := c.withParams(ctx, sql, params)
	return err
}

func (c *conn) Query(ctx context.Context, sql string, params clickhouse.Params, settings clickhouse.Settings) (clickhouse.Rows, error) {
	if len(settings) > 0 {
		clause, err := settingsClause(settings)
		if err != nil {
			return nil, err
		}
		sql += "\n" + clause
	}
	out, err := c.withParams(ctx, sql, params)
	if err != nil {
		return nil, err
	}
	// Embedded, the engine hands over the whole result at once and does not apply
	// max_result_bytes to it; check it here, before decoding doubles the memory.
	if limit, ok := settings["max_result_bytes"].(int); ok && limit > 0 && len(out) > limit {
		return nil, fmt.Errorf("chdb: Limit for result exceeded: %d bytes, max_result_bytes %d", len(out), limit)
	}
	t, err := DecodeRowBinary(out)
	if err != nil {
		return nil, fmt.Errorf("chdb: decode result: %w", err)
	}
	return &rows{t: t, i: -1}, nil
}

// QueryFrames runs a frames read and decodes it straight into frames
// (clickhouse.FramesConn, DecodeFrames).
func (c *conn) QueryFrames(ctx context.Context, sql string, params clickhouse.Params, n int) ([]schemas.Frame, error) {
	out, err := c.withParams(ctx, sql, params)
	if err != nil {
		return nil, err
	}
	frames, err := DecodeFrames(out, n)
	if err != nil {
		return nil, fmt.Errorf("chdb: decode frames: %w", err)
	}
	return frames, nil
}

func settingsClause(settings clickhouse.Settings) (string, error) {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		if !identRe.MatchString(k) {
			return "", fmt.Errorf("chdb: setting name %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		switch v := settings[k].(type) {
		case int:
			parts[i] = k + " = " + strconv.Itoa(v)
		case int64:
			parts[i] = k + " = " + strconv.FormatInt(v, 10)
		case string:
			parts[i] = k + " = " + Quote(v)
		default:
			return "", fmt.Errorf("chdb: setting %s: unsupported value %T", k, v)
		}
	}
	return "SETTINGS " + strings.Join(parts, ", "), nil
}

func (c *conn) Insert(ctx context.Context, b *clickhouse.Block, token string) error {
	var sb strings.Builder
	sb.WriteString("INSERT INTO `" + b.Table + "` (")
	for i, col := range b.Columns {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("`" + col.Name + "`")
	}
	sb.WriteString(")")
	if token != "" {
		sb.WriteString(" SETTINGS insert_deduplication_token = " + Quote(token))
	}
	sb.WriteString(" FORMAT TabSeparated\n")
	buf, err := AppendTSV([]byte(sb.String()), b)
	if err != nil {
		return err
	}
	// Inline data after FORMAT is not parsed as SQL, so placeholders in it mean nothing.
	_, err = c.exclusive(ctx, string(buf), nil)
	return err
}

func (c *conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	openMu.Lock()
	defer openMu.Unlock()
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
		isOpen = false
	}
	return nil
}
