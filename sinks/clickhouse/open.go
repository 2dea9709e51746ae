package clickhouse

import (
	"context"
	"errors"
	"fmt"
)

// Embedded is embedded chDB, filled in by package sinks/clickhouse/chdb when a
// binary links it (build tag chdb); both fields are nil otherwise.
var Embedded struct {
	// Open opens the store in dir, with an optional engine configuration file.
	Open func(dir, configFile string, cfg Config) (Store, error)
	// Load loads libchdb.so, so a command can fail before it starts anything else.
	Load func() error
}

// Location is where a store lives: a ClickHouse server (ServerConfig.Addr) or an
// embedded chDB data directory. It is the clickhouse section of the sink's and the
// query role's configuration files.
type Location struct {
	ServerConfig   `yaml:",inline"`
	Config         `yaml:",inline"`
	CHDBPath       string `yaml:"chdb_path"`
	CHDBConfigFile string `yaml:"chdb_config_file"` // engine config, e.g. storage policies
}

// Open opens the store at loc without migrating it.
func Open(ctx context.Context, loc Location) (Store, error) {
	switch {
	case loc.CHDBPath == "":
		return OpenServer(ctx, loc.ServerConfig, loc.Config)
	case len(loc.Addr) > 0:
		return nil, errors.New("set either clickhouse.addr or clickhouse.chdb_path, not both")
	case Embedded.Open == nil:
		return nil, fmt.Errorf("clickhouse.chdb_path is set but this binary was built without chDB; rebuild with -tags chdb or use a ClickHouse server (clickhouse.addr)")
	}
	return Embedded.Open(loc.CHDBPath, loc.CHDBConfigFile, loc.Config)
}
