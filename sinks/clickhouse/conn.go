package clickhouse

import (
	"context"
	"fmt"
	"regexp"
)

// Conn is the transport a Store runs its SQL over: a ClickHouse server through
// clickhouse-go, or embedded chDB. The Store owns all SQL, so both behave alike.
type Conn interface {
	// Exec runs a statement that returns no rows.
	Exec(ctx context.Context, sql string, params Params) error
	// Query runs a statement and returns its rows. settings apply to this query only.
	Query(ctx context.Context, sql string, params Params, settings Settings) (Rows, error)
	// Insert writes one block into its table, naming the block's columns. A non-empty
	// token is sent as insert_deduplication_token.
	Insert(ctx context.Context, b *Block, token string) error
	Close() error
}

// Params are ClickHouse query parameters: {name:Type} placeholders in the SQL, values
// in the type's text form. The engine parses them; they are never spliced into SQL.
type Params map[string]string

// Settings are per-query ClickHouse settings.
type Settings map[string]any

// Rows iterates over a query result.
type Rows interface {
	Columns() []Column
	Next() bool
	// Scan copies the current row into dest pointers (*string, *[]byte, *int64,
	// *int32, *uint64, *bool, *time.Time, **time.Time, **int32, **bool, *[]string,
	// *map[string]int64, *any).
	Scan(dest ...any) error
	// Values returns the current row as Go values (see Result).
	Values() ([]any, error)
	Err() error
	Close() error
}

// Block is a column-oriented batch of rows for one table. Values are typed slices
// ([]string, []int64, []int32, []uint32, []uint64, []uint8, []*uint8, []bool, []time.Time, []*time.Time,
// []*int32, []*bool, [][]string, []map[string]int64), all of length Rows.
type Block struct {
	Table   string
	Columns []BlockColumn
	Rows    int
}

// BlockColumn is one named column of a Block.
type BlockColumn struct {
	Name   string
	Values any
}

var paramRef = regexp.MustCompile(`\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:`)

// CheckParams reports placeholders in sql that params does not set. chDB keeps
// parameters for the life of its session, so an unset one would silently take an
// earlier query's value; both transports refuse instead.
func CheckParams(sql string, params Params) error {
	for _, m := range paramRef.FindAllStringSubmatch(sql, -1) {
		if _, ok := params[m[1]]; !ok {
			return fmt.Errorf("query parameter %q is not set", m[1])
		}
	}
	return nil
}
