package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tapline/tapline/query/memstore"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// failingSQL answers every statement with rows, then an error: a statement that
// reached a result or memory limit halfway.
type failingSQL struct {
	*memstore.Store
	rows  int
	early bool
}

func (f failingSQL) SQL(context.Context, string, clickhouse.Limits) (clickhouse.Rows, error) {
	r := &memstore.MemRows{Cols: []clickhouse.Column{{Name: "n", Type: "UInt64"}}, Fail: errors.New("Memory limit (for query) exceeded")}
	for i := range f.rows {
		r.Rows = append(r.Rows, []any{uint64(i)})
	}
	return r, nil
}

func TestSQLStreamsRowsAndReportsLateErrors(t *testing.T) {
	tok := func(e *env) string { return e.token("carol", "auditors") }
	e := newEnvStore(t, Config{}, failingSQL{Store: memstore.NewStore(), rows: 3})
	resp, body := e.do(tok(e), http.MethodPost, "/api/v1/sql", "text/plain", strings.NewReader("SELECT number FROM numbers(10)"))
	var res SQLResult
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if res.RowCount != 3 || len(res.Rows) != 3 || res.Error == nil || !strings.Contains(res.Error.Message, "after 3 rows") {
		t.Errorf("late failure not reported with the rows sent: %s", body)
	}
	// A statement that fails before its first row gets an error status.
	e = newEnvStore(t, Config{}, failingSQL{Store: memstore.NewStore()})
	resp, body = e.do(tok(e), http.MethodPost, "/api/v1/sql", "text/plain", strings.NewReader("SELECT 1"))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Memory limit") {
		t.Errorf("early failure: %d %s", resp.StatusCode, body)
	}
}
