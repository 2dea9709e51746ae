//go:build chdb

package main

import (
	"github.com/tapline/tapline/sinks/clickhouse/chdb"
	"github.com/tapline/tapline/sinks/clickhouse/chdb/libchdb"
)

func init() {
	openCHDB = chdb.OpenConfig
	loadCHDB = libchdb.Load
}
