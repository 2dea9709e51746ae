package clickhouse

import (
	"github.com/tapline/tapline/kafkaconn"
	"github.com/tapline/tapline/schemas/registry"
)

// SinkFile is the sink's configuration file, `tapline sink --config`
// (docs/storage.md). It lives here, beside what it configures, so the deployment
// tests decode the shipped configurations into the type the sink reads.
type SinkFile struct {
	Kafka struct {
		WriterConfig       `yaml:",inline"`
		kafkaconn.Security `yaml:",inline"` // kafka.tls, kafka.sasl
	} `yaml:"kafka"`
	ClickHouse Location `yaml:"clickhouse"`
	Metrics    struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	// SchemaRegistry is the registry the processors register with (their
	// schema_registry); the sink looks the values' ids up there.
	SchemaRegistry registry.Config `yaml:"schema_registry"`
}
