package api

import (
	"log/slog"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/query/console"
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
	// TrustedProcessorKeys: the processors' masked-frame signing keys, same forms.
	TrustedProcessorKeys []string `yaml:"trusted_processor_keys"`
	// AccessLog is a file that gets every api_access record as a JSON line.
	AccessLog string `yaml:"access_log"`
	// AccessLogRequired refuses a request whose access record cannot be written
	// (fail closed) instead of serving it and logging the failure.
	AccessLogRequired bool `yaml:"access_log_required"`
	// Limits bound the requests and follows in progress (Config).
	Limits struct {
		Requests            int `yaml:"requests"`
		RequestsPerIdentity int `yaml:"requests_per_identity"`
		Follows             int `yaml:"follows"`
		FollowsPerIdentity  int `yaml:"follows_per_identity"`
	} `yaml:"limits"`
	SQL struct {
		MaxRows          int           `yaml:"max_rows"`
		MaxExecutionTime time.Duration `yaml:"max_execution_time"`
		MaxResultBytes   int64         `yaml:"max_result_bytes"`
		MaxMemoryBytes   int64         `yaml:"max_memory_usage"`
	} `yaml:"sql"`
	Follow struct {
		Poll    time.Duration `yaml:"poll"`
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"follow"`
	// Console configures the web console served at "/" (docs/console.md).
	Console console.Config `yaml:"console"`
	// ClickHouse is the store, read with a login that should not write.
	ClickHouse clickhouse.Location `yaml:"clickhouse"`
}

// APIConfig is the handler configuration the file describes, with the trusted
// gateway keys parsed. The access log is left to the caller, which owns the file.
func (c *FileConfig) APIConfig() (Config, error) {
	out := Config{
		AuditorsGroup: c.AuditorsGroup, SQLMaxRows: c.SQL.MaxRows, SQLMaxExecutionTime: c.SQL.MaxExecutionTime,
		SQLMaxResultBytes: c.SQL.MaxResultBytes, SQLMaxMemoryBytes: c.SQL.MaxMemoryBytes,
		AccessLogRequired: c.AccessLogRequired, MaxRequests: c.Limits.Requests, MaxRequestsPerIdentity: c.Limits.RequestsPerIdentity,
		MaxFollows: c.Limits.Follows, MaxFollowsPerIdentity: c.Limits.FollowsPerIdentity,
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
		slog.Warn("no trusted gateway keys configured: verify reports every session as untrusted at best; set trusted_gateway_keys")
	}
	var err error
	if out.TrustedProcessorKeys, err = keyfile.ParsePublicList(c.TrustedProcessorKeys); err != nil {
		return out, err
	}
	if len(out.TrustedProcessorKeys) == 0 {
		slog.Warn("no trusted processor keys configured: verify reports sessions with masked frames as untrusted; set trusted_processor_keys")
	}
	return out, nil
}
