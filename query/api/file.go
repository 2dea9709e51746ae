package api

import (
	"log/slog"
	"time"

	"github.com/tapline/tapline/ingest/auth"
	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// FileConfig is the query server's configuration file, `tapline query --config`
// (docs/api.md). It lives here, beside what it configures, so the deployment tests
// decode the shipped configurations into the type the server reads.
type FileConfig struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AllowPlaintext serves plain HTTP on a non-loopback listener: only when a
	// TLS-terminating proxy is in front, since bearer tokens cross the network.
	AllowPlaintext bool        `yaml:"allow_plaintext"`
	OIDC           auth.Config `yaml:"oidc"`
	// AuditorsGroup sees every session and may use SQL (default "auditors").
	AuditorsGroup string `yaml:"auditors_group"`
	// TrustedGatewayKeys: hex public keys or key files (verify.ParsePublicKey).
	TrustedGatewayKeys []string `yaml:"trusted_gateway_keys"`
	// AccessLog is a file that gets every api_access record as a JSON line.
	AccessLog string `yaml:"access_log"`
	SQL       struct {
		MaxRows          int           `yaml:"max_rows"`
		MaxExecutionTime time.Duration `yaml:"max_execution_time"`
	} `yaml:"sql"`
	Follow struct {
		Poll    time.Duration `yaml:"poll"`
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"follow"`
	ClickHouse struct {
		clickhouse.ServerConfig `yaml:",inline"`
		clickhouse.Config       `yaml:",inline"`
		CHDBPath                string `yaml:"chdb_path"`
	} `yaml:"clickhouse"`
}

// APIConfig is the handler configuration the file describes, with the trusted
// gateway keys parsed. The access log is left to the caller, which owns the file.
func (c *FileConfig) APIConfig() (Config, error) {
	out := Config{
		AuditorsGroup: c.AuditorsGroup, SQLMaxRows: c.SQL.MaxRows, SQLMaxExecutionTime: c.SQL.MaxExecutionTime,
		FollowPoll: c.Follow.Poll, FollowTimeout: c.Follow.Timeout,
	}
	for _, k := range c.TrustedGatewayKeys {
		pub, err := verify.ParsePublicKey(k)
		if err != nil {
			return out, err
		}
		out.TrustedGatewayKeys = append(out.TrustedGatewayKeys, pub)
	}
	if len(out.TrustedGatewayKeys) == 0 {
		slog.Warn("no trusted gateway keys configured: verify reports session.end signatures as consistent, not trusted")
	}
	return out, nil
}
