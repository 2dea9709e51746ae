//go:build chdb

package main

// Links embedded chDB: clickhouse.Open then serves clickhouse.chdb_path, and
// tapline dev runs. libchdb.so is loaded when the first store opens.
import _ "github.com/tapline/tapline/sinks/clickhouse/chdb"
