package clickhouse

import "github.com/tapline/tapline/kafkaconn"

// SinkFile is the sink's configuration file, `tapline sink --config`
// (docs/storage.md). It lives here, beside what it configures, so the deployment
// tests decode the shipped configurations into the type the sink reads.
type SinkFile struct {
	Kafka struct {
		WriterConfig       `yaml:",inline"`
		kafkaconn.Security `yaml:",inline"` // kafka.tls, kafka.sasl
	} `yaml:"kafka"`
	ClickHouse struct {
		ServerConfig   `yaml:",inline"`
		Config         `yaml:",inline"`
		CHDBPath       string `yaml:"chdb_path"`
		CHDBConfigFile string `yaml:"chdb_config_file"` // engine config, e.g. storage policies
	} `yaml:"clickhouse"`
	Metrics struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
}
