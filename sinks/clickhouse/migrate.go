package clickhouse

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFiles embed.FS

// Migration is one embedded schema change.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations returns a schema set's bootstrap statements (the schema_migrations
// table) and its numbered migrations, oldest first.
func Migrations(schema string) (bootstrap []string, ms []Migration, err error) {
	dir := path.Join("migrations", schema)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, nil, fmt.Errorf("schema set %q: %w", schema, err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimSuffix(e.Name(), ".sql")
		if name == "bootstrap" {
			bootstrap = splitStatements(string(b))
			continue
		}
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return nil, nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		ms = append(ms, Migration{Version: uint32(v), Name: rest, Statements: splitStatements(string(b))})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return bootstrap, ms, nil
}

// splitStatements splits a migration file on ";" at line ends and drops comments-only
// chunks. Migration files keep semicolons out of string literals.
func splitStatements(s string) []string {
	var out []string
	for _, chunk := range strings.Split(s, ";\n") {
		chunk = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(chunk), ";"))
		if hasSQL(chunk) {
			out = append(out, chunk)
		}
	}
	return out
}

func hasSQL(chunk string) bool {
	for _, line := range strings.Split(chunk, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") {
			return true
		}
	}
	return false
}

// migrate applies the migrations missing from schema_migrations. Every statement is
// idempotent (IF NOT EXISTS), so a crash between a statement and its record, or two
// sinks migrating at once, leaves a correct schema.
func (s *store) migrate(ctx context.Context) error {
	bootstrap, ms, err := Migrations(s.cfg.Schema)
	if err != nil {
		return err
	}
	if s.cfg.Schema == SchemaFull {
		if err := s.checkVersion(ctx); err != nil {
			return err
		}
	}
	for _, stmt := range bootstrap {
		if err := s.conn.Exec(ctx, stmt, nil); err != nil {
			return fmt.Errorf("clickhouse: bootstrap: %w", err)
		}
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := s.conn.Exec(ctx, stmt, nil); err != nil {
				return fmt.Errorf("clickhouse: migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// A block rather than query parameters: servers before 19.x have none.
		rec := &Block{Table: "schema_migrations", Rows: 1, Columns: []BlockColumn{
			{Name: "version", Values: []uint32{m.Version}}, {Name: "name", Values: []string{m.Name}},
		}}
		if err := s.conn.Insert(ctx, rec, ""); err != nil {
			return fmt.Errorf("clickhouse: record migration %04d: %w", m.Version, err)
		}
		slog.Info("clickhouse migration applied", "version", m.Version, "name", m.Name, "schema", s.cfg.Schema)
	}
	return nil
}

// ErrSchemaBehind is returned by CheckSchema when migrations are missing.
var ErrSchemaBehind = errors.New("schema not migrated")

func (s *store) CheckSchema(ctx context.Context) error {
	_, ms, err := Migrations(s.cfg.Schema)
	if err != nil {
		return err
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v; start `tapline sink` against this database first: it applies the migrations", ErrSchemaBehind, err)
	}
	for _, m := range ms {
		if !applied[m.Version] {
			return fmt.Errorf("%w: migration %04d_%s is not applied; start (or upgrade) `tapline sink` first: it applies migrations, the query service never does",
				ErrSchemaBehind, m.Version, m.Name)
		}
	}
	return nil
}

// AppliedMigrations lists the versions recorded in schema_migrations.
func (s *store) appliedMigrations(ctx context.Context) (map[uint32]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[uint32]bool{}
	for rows.Next() {
		var v uint64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out[uint32(v)] = true
	}
	return out, rows.Err()
}

// MinVersion is the oldest ClickHouse the full schema supports (docs/architecture.md, docs/storage.md).
var MinVersion = [2]int{24, 8}

// checkVersion refuses servers older than MinVersion with a clear message instead of
// the first DDL statement's syntax error.
func (s *store) checkVersion(ctx context.Context) error {
	v, err := s.queryString(ctx, "SELECT version()", nil, "")
	if err != nil {
		return fmt.Errorf("clickhouse: server version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("clickhouse: server version %q: %w", v, err)
	}
	if major < MinVersion[0] || major == MinVersion[0] && minor < MinVersion[1] {
		return fmt.Errorf("clickhouse: server %s is older than %d.%d, the oldest the schema supports (schema %q exists only for tests against old servers)",
			v, MinVersion[0], MinVersion[1], SchemaLegacy)
	}
	return nil
}
