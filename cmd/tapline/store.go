package main

import (
	"context"
	"fmt"

	"github.com/tapline/tapline/sinks/clickhouse"
)

// openCHDB opens an embedded chDB store. Set by chdb.go in binaries built with
// -tags chdb (libchdb.so is loaded when the first store opens).
var openCHDB func(dir, configFile string, cfg clickhouse.Config) (clickhouse.Store, error)

// loadCHDB loads libchdb.so, so that a command which needs it fails before it
// starts anything else. Set with openCHDB.
var loadCHDB func() error

// openStore opens the store a role's clickhouse section names: a ClickHouse server
// (addr), or embedded chDB (chdb_path, with an optional engine configuration file)
// in binaries built with -tags chdb. role prefixes the errors.
func openStore(ctx context.Context, role string, srv clickhouse.ServerConfig, cfg clickhouse.Config, chdbPath, chdbConfigFile string) (clickhouse.Store, error) {
	switch {
	case chdbPath == "":
		return clickhouse.OpenServer(ctx, srv, cfg)
	case len(srv.Addr) > 0:
		return nil, fmt.Errorf("%s: set either clickhouse.addr or clickhouse.chdb_path, not both", role)
	case openCHDB == nil:
		return nil, fmt.Errorf("%s: this binary was built without chDB; rebuild with -tags chdb or use a ClickHouse server", role)
	}
	return openCHDB(chdbPath, chdbConfigFile, cfg)
}
