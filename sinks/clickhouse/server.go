package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// codeReadonly is ClickHouse's READONLY error: a statement refused in readonly mode.
const codeReadonly = 164

// OpenServer connects to a ClickHouse server or cluster over the native protocol,
// creating the configured database if it is missing. Call Migrate before writing.
func OpenServer(ctx context.Context, sc ServerConfig, cfg Config) (Store, error) {
	conn, err := DialServer(ctx, sc)
	if err != nil {
		return nil, err
	}
	s, err := NewStore(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// DialServer returns a Conn to a ClickHouse server.
func DialServer(ctx context.Context, sc ServerConfig) (Conn, error) {
	if len(sc.Addr) == 0 {
		sc.Addr = []string{"127.0.0.1:9000"}
	}
	if sc.Database == "" {
		sc.Database = "tapline"
	}
	if !identRe.MatchString(sc.Database) {
		return nil, fmt.Errorf("clickhouse: database %q: want an identifier", sc.Database)
	}
	if sc.Password == "" && sc.PasswordEnv != "" {
		sc.Password = os.Getenv(sc.PasswordEnv)
	}
	opts, err := serverOptions(sc)
	if err != nil {
		return nil, err
	}
	// The database may not exist yet, and a connection naming it would be refused.
	opts.Auth.Database = "default"
	boot, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	// Asked here, on the default database: the configured one may not exist yet,
	// and a read-only login must get "not migrated" rather than "no database".
	sv, err := boot.ServerVersion()
	if err != nil {
		boot.Close()
		return nil, fmt.Errorf("clickhouse: server version of %s: %w", strings.Join(sc.Addr, ","), err)
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+sc.Database)
	boot.Close()
	var exc *ch.Exception
	if errors.As(err, &exc) && exc.Code == codeReadonly {
		// A read-only login (the query role's tapline_reader) cannot run DDL, even a
		// no-op one; the sink created the database, and connecting says if not.
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("clickhouse: create database %s on %s: %w", sc.Database, strings.Join(sc.Addr, ","), err)
	}
	opts.Auth.Database = sc.Database
	db, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	return &serverConn{db: db, inline: sv.Revision < proto.DBMS_MIN_PROTOCOL_VERSION_WITH_PARAMETERS}, nil
}

func serverOptions(sc ServerConfig) (*ch.Options, error) {
	opts := &ch.Options{
		Addr:        sc.Addr,
		Auth:        ch.Auth{Username: sc.Username, Password: sc.Password},
		DialTimeout: sc.DialTimeout,
		ReadTimeout: sc.ReadTimeout,
		Compression: &ch.Compression{Method: ch.CompressionLZ4},
		ClientInfo:  ch.ClientInfo{Products: []struct{ Name, Version string }{{Name: "tapline-sink", Version: "1"}}},
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if !sc.TLS {
		return opts, nil
	}
	opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if sc.CAFile != "" {
		pem, err := os.ReadFile(sc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clickhouse: ca_file %s: no PEM certificates", sc.CAFile)
		}
		opts.TLS.RootCAs = pool
	}
	return opts, nil
}

// serverConn is a Conn over clickhouse-go's native protocol.
type serverConn struct {
	db driver.Conn
	// inline: the server predates query parameters; they go into the SQL as literals.
	inline bool
}

// prepare checks params against sql and, for an old server, writes them in.
func (c *serverConn) prepare(sql string, params Params) (string, Params, error) {
	if err := CheckParams(sql, params); err != nil {
		return "", nil, err
	}
	if !c.inline || len(params) == 0 {
		return sql, params, nil
	}
	sql, err := inlineParams(sql, params)
	return sql, nil, err
}

func queryContext(ctx context.Context, params Params, settings Settings) context.Context {
	var opts []ch.QueryOption
	if len(params) > 0 {
		opts = append(opts, ch.WithParameters(ch.Parameters(params)))
	}
	if len(settings) > 0 {
		opts = append(opts, ch.WithSettings(ch.Settings(settings)))
	}
	if len(opts) == 0 {
		return ctx
	}
	return ch.Context(ctx, opts...)
}

func (c *serverConn) Exec(ctx context.Context, sql string, params Params) error {
	sql, params, err := c.prepare(sql, params)
	if err != nil {
		return err
	}
	return c.db.Exec(queryContext(ctx, params, nil), sql)
}

func (c *serverConn) Query(ctx context.Context, sql string, params Params, settings Settings) (Rows, error) {
	sql, params, err := c.prepare(sql, params)
	if err != nil {
		return nil, err
	}
	rows, err := c.db.Query(queryContext(ctx, params, settings), sql)
	if err != nil {
		return nil, err
	}
	return newServerRows(rows), nil
}

func (c *serverConn) Insert(ctx context.Context, b *Block, token string) error {
	names := make([]string, len(b.Columns))
	for i, col := range b.Columns {
		names[i] = "`" + col.Name + "`"
	}
	var settings Settings
	if token != "" {
		settings = Settings{"insert_deduplication_token": token}
	}
	batch, err := c.db.PrepareBatch(queryContext(ctx, nil, settings),
		"INSERT INTO `"+b.Table+"` ("+strings.Join(names, ", ")+")")
	if err != nil {
		return err
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	for i, col := range b.Columns {
		if err := batch.Column(i).Append(col.Values); err != nil {
			return fmt.Errorf("column %s: %w", col.Name, err)
		}
	}
	return batch.Send()
}

func (c *serverConn) Close() error { return c.db.Close() }

// serverRows adapts driver.Rows: each row is scanned into the column's own Go type,
// then converted, so callers get the same conversions as with chDB. The scan
// targets are allocated once per result and zeroed before each row: a fresh
// reflect.New per column per row was a third of a long session's read CPU.
type serverRows struct {
	rows  driver.Rows
	cols  []Column
	ptrs  []any
	elems []reflect.Value
	err   error
}

func newServerRows(rows driver.Rows) *serverRows {
	r := &serverRows{rows: rows}
	for _, ct := range rows.ColumnTypes() {
		r.cols = append(r.cols, Column{Name: ct.Name(), Type: ct.DatabaseTypeName()})
		p := reflect.New(ct.ScanType())
		r.ptrs = append(r.ptrs, p.Interface())
		r.elems = append(r.elems, p.Elem())
	}
	return r
}

func (r *serverRows) Columns() []Column { return r.cols }
func (r *serverRows) Next() bool        { return r.err == nil && r.rows.Next() }
func (r *serverRows) Close() error      { return r.rows.Close() }

func (r *serverRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

func (r *serverRows) Values() ([]any, error) {
	out := make([]any, len(r.ptrs))
	return out, r.values(out)
}

// values scans the current row into out. Zeroing first keeps a slice or map of
// the previous row, already handed out, from being reused by the driver.
func (r *serverRows) values(out []any) error {
	for _, e := range r.elems {
		e.SetZero()
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		r.err = err
		return err
	}
	for i, e := range r.elems {
		out[i] = Normalize(e.Interface())
	}
	return nil
}

func (r *serverRows) Scan(dest ...any) error {
	if len(dest) != len(r.cols) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(r.cols))
	}
	var buf [32]any
	vals := buf[:0]
	if len(dest) > len(buf) {
		vals = make([]any, 0, len(dest))
	}
	vals = vals[:len(dest)]
	if err := r.values(vals); err != nil {
		return err
	}
	for i, v := range vals {
		if err := ScanInto(dest[i], v); err != nil {
			return errors.Join(fmt.Errorf("column %s", r.cols[i].Name), err)
		}
	}
	return nil
}
