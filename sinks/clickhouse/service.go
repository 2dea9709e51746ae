package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// store implements Store over a Conn; the server and chDB stores differ only in it.
type store struct {
	conn Conn
	cfg  Config

	mu      sync.Mutex
	columns map[string]map[string]string // table → column → type, as live in the database
}

// NewStore returns a Store that runs tapline's SQL over conn. It takes ownership of
// conn: Close closes it.
func NewStore(conn Conn, cfg Config) (Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &store{conn: conn, cfg: cfg}, nil
}

func (s *store) Migrate(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return err
	}
	if err := s.applyTableSettings(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.columns = nil // re-read after DDL
	s.mu.Unlock()
	return nil
}

func (s *store) Close() error { return s.conn.Close() }

// Insert writes each table's rows as one block. The legacy schema lacks some columns
// and types; a block keeps only the columns its table has, so the same writer code
// feeds both schema sets.
func (s *store) Insert(ctx context.Context, b *Batch) error {
	blocks := []*Block{FramesBlock(b.Frames), CommandsBlock(b.Commands), SessionsBlock(b.Sessions), AlertsBlock(b.Sessions)}
	for _, blk := range blocks {
		if blk.Rows == 0 {
			continue
		}
		fitted, err := s.fit(ctx, blk)
		if err != nil {
			return err
		}
		token := ""
		if b.Token != "" && s.cfg.Schema == SchemaFull {
			token = b.Token + "/" + blk.Table
		}
		if err := s.conn.Insert(ctx, fitted, token); err != nil {
			return fmt.Errorf("clickhouse: insert %d rows into %s: %w", blk.Rows, blk.Table, err)
		}
	}
	return nil
}

// fit drops the block's columns its table lacks and stores bools as UInt8 where the
// table has no Bool type.
func (s *store) fit(ctx context.Context, b *Block) (*Block, error) {
	cols, err := s.tableColumns(ctx, b.Table)
	if err != nil {
		return nil, err
	}
	out := &Block{Table: b.Table, Rows: b.Rows}
	for _, c := range b.Columns {
		typ, ok := cols[c.Name]
		if !ok {
			continue
		}
		out.Columns = append(out.Columns, BlockColumn{Name: c.Name, Values: boolsAsUInt8(typ, c.Values)})
	}
	out.Columns = append(out.Columns, legacyColumns(cols, b)...)
	return out, nil
}

// legacyColumns are the legacy schema's stand-ins for types 18.16 lacks: ts in
// µs next to the DateTime of whole seconds, and masks as key and value arrays.
// Verify needs both exactly as recorded.
func legacyColumns(cols map[string]string, b *Block) []BlockColumn {
	var out []BlockColumn
	for _, c := range b.Columns {
		switch v := c.Values.(type) {
		case []time.Time:
			if _, ok := cols[c.Name+"_us"]; ok && c.Name == "ts" {
				us := make([]int64, len(v))
				for i, t := range v {
					us[i] = t.UnixMicro()
				}
				out = append(out, BlockColumn{Name: c.Name + "_us", Values: us})
			}
		case []map[string]int64:
			if _, ok := cols[c.Name+"_keys"]; ok {
				keys, vals := make([][]string, len(v)), make([][]int64, len(v))
				for i, m := range v {
					keys[i], vals[i] = mapArrays(m)
				}
				out = append(out, BlockColumn{Name: c.Name + "_keys", Values: keys}, BlockColumn{Name: c.Name + "_values", Values: vals})
			}
		}
	}
	return out
}

func mapArrays(m map[string]int64) ([]string, []int64) {
	keys := slices.Sorted(maps.Keys(m))
	vals := make([]int64, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	if keys == nil {
		keys = []string{}
	}
	return keys, vals
}

// arraysMap is mapArrays reversed; nil when empty, as the Avro codecs decode it.
func arraysMap(keys []string, vals []int64) (map[string]int64, error) {
	if len(keys) != len(vals) {
		return nil, fmt.Errorf("masks: %d keys, %d values", len(keys), len(vals))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	m := make(map[string]int64, len(keys))
	for i, k := range keys {
		m[k] = vals[i]
	}
	return m, nil
}

func boolsAsUInt8(typ string, v any) any {
	switch bs := v.(type) {
	case []bool:
		if typ != "UInt8" {
			return v
		}
		out := make([]uint8, len(bs))
		for i, b := range bs {
			if b {
				out[i] = 1
			}
		}
		return out
	case []*bool:
		if typ != "Nullable(UInt8)" {
			return v
		}
		out := make([]*uint8, len(bs))
		for i, b := range bs {
			if b != nil {
				var u uint8
				if *b {
					u = 1
				}
				out[i] = &u
			}
		}
		return out
	}
	return v
}

func (s *store) tableColumns(ctx context.Context, table string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.columns == nil {
		cols, err := s.readColumns(ctx)
		if err != nil {
			return nil, err
		}
		s.columns = cols
	}
	cols, ok := s.columns[table]
	if !ok {
		s.columns = nil // not migrated yet; look again next time
		return nil, fmt.Errorf("clickhouse: table %s does not exist (run migrations)", table)
	}
	return cols, nil
}

func (s *store) readColumns(ctx context.Context) (map[string]map[string]string, error) {
	rows, err := s.conn.Query(ctx,
		"SELECT table, name, type FROM system.columns WHERE database = currentDatabase()", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read table columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var table, name, typ string
		if err := rows.Scan(&table, &name, &typ); err != nil {
			return nil, err
		}
		if out[table] == nil {
			out[table] = map[string]string{}
		}
		out[table][name] = typ
	}
	return out, rows.Err()
}
