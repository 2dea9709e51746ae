//go:build chdb

package main

import "github.com/tapline/tapline/sinks/clickhouse/chdb"

func init() { openCHDB = chdb.OpenConfig }
