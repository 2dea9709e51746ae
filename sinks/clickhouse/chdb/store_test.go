//go:build chdb

package chdb

import (
	"testing"

	"github.com/tapline/tapline/sinks/clickhouse"
	"github.com/tapline/tapline/sinks/clickhouse/storetest"
)

func dialTemp(t *testing.T) clickhouse.Conn {
	t.Helper()
	c, err := Dial(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStore(t *testing.T) { storetest.Run(t, dialTemp) }
