package runner

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tapline/tapline/config"
	"github.com/tapline/tapline/kafkaconn"
	"github.com/tapline/tapline/keyfile"
	"github.com/tapline/tapline/processors/integrity"
	"github.com/tapline/tapline/processors/mask"
	"github.com/tapline/tapline/processors/pipeline"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/registry"
)

// Config is the processor's configuration file (docs/processors.md).
type Config struct {
	Kafka  Kafka  `yaml:"kafka"`
	Topics Topics `yaml:"topics"`
	// CreateTopics creates missing topics at start (default true). Production clusters
	// create them with deploy/kafka instead and may switch this off.
	CreateTopics *bool `yaml:"create_topics"`
	// Partitions is the partition count of topics created here when the raw topic
	// does not exist yet either (default 12); others get the raw topic's count.
	Partitions int32    `yaml:"partitions"`
	Sessions   Sessions `yaml:"sessions"`
	Stitch     Stitch   `yaml:"stitch"`
	// TrustedGatewayKeys are the Ed25519 public keys (base64 or hex) whose session.end
	// signatures are trusted; empty trusts any key that verifies its own signature.
	TrustedGatewayKeys []string `yaml:"trusted_gateway_keys"`
	// SigningKey is the Ed25519 key file that signs every frame masking changed
	// (created 0600 on first start; refused when others can read it). Processors
	// sharing a consumer group may share it. Empty leaves masked frames unsigned,
	// and verify then reports them as unverifiable.
	SigningKey string      `yaml:"signing_key"`
	Masking    mask.Config `yaml:"masking"`
	Metrics    Metrics     `yaml:"metrics"`
	// FrameHook is passed to the pipeline (tests only; see pipeline.Config).
	FrameHook func(*schemas.Frame) `yaml:"-"`
	// SchemaRegistry, when its urls are set, registers the frames, commands and
	// sessions schemas at start and writes those topics in the Confluent framing
	// with the registry's ids (docs/siem.md); it also reads raw frames so framed.
	SchemaRegistry registry.Config `yaml:"schema_registry"`

	env func(string) (string, bool) // resolves kafka.sasl.password_env
}

// Kafka is how the processor reaches Kafka.
type Kafka struct {
	Brokers []string `yaml:"brokers"`
	// Group is the consumer group; processors sharing it share the raw partitions.
	Group string `yaml:"group"`
	// TransactionalID must be unique per running processor and stable across its
	// restarts (default tapline-process-<hostname>): a restarted instance then fences
	// its predecessor and aborts its open transaction at once.
	TransactionalID    string        `yaml:"transactional_id"`
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// SessionTimeout is how long the group waits for a silent member before giving
	// its partitions to others (default 45s; brokers allow 6s and up).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// InstanceID makes this member static: restarted with the same id it gets its
	// partitions back without a rebalance, but when it stops for good they wait for
	// the session timeout. Empty (the default) is a dynamic member.
	InstanceID string `yaml:"instance_id"`
	// MaxPollRecords bounds the frames in one transaction.
	MaxPollRecords int `yaml:"max_poll_records"`
	// StateLoadTimeout bounds the wait for the state topic to catch up with the
	// group's committed offsets when partitions are assigned.
	StateLoadTimeout time.Duration `yaml:"state_load_timeout"`
	// Security is kafka.tls and kafka.sasl, shared by every client the processor
	// opens; absent is plaintext.
	kafkaconn.Security `yaml:",inline"`
}

// Topics names the topics read and written.
type Topics struct {
	Raw      string `yaml:"raw"`
	Frames   string `yaml:"frames"`
	Commands string `yaml:"commands"`
	Sessions string `yaml:"sessions"`
	Audit    string `yaml:"audit"`
	// AuditOCSF, when set, also writes every audit record as an OCSF event to this
	// topic, in the same transaction (docs/audit-format.md). Empty (the default) is off.
	AuditOCSF string `yaml:"audit_ocsf"`
	State     string `yaml:"state"`
	// DeadLetter receives the raw record of every frame the processors failed on
	// (restricted like the raw topic: it holds unmasked payloads).
	DeadLetter string `yaml:"dead_letter"`
}

// Sessions configures session lifetimes.
type Sessions struct {
	IdleTimeout        time.Duration `yaml:"idle_timeout"`
	AbandonedRetention time.Duration `yaml:"abandoned_retention"`
	ClosedRetention    time.Duration `yaml:"closed_retention"`
	SummaryInterval    time.Duration `yaml:"summary_interval"`
	HoldFor            time.Duration `yaml:"hold_for"`
}

// Stitch bounds what is kept per command and session.
type Stitch struct {
	MaxTextBytes      int `yaml:"max_text_bytes"`
	MaxStatementBytes int `yaml:"max_statement_bytes"`
}

// Metrics is the Prometheus endpoint; empty Listen disables it.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// EnvKeys lists the environment overrides the processors read, in file order.
func EnvKeys() []string { return config.EnvKeys(&Config{}) }

// DefaultStateTopic is the compacted topic holding each session's state.
const DefaultStateTopic = "tapline.processor.state"

// Load reads a configuration file; an empty path means all defaults. The environment
// (lookupEnv, os.LookupEnv in production) overrides the file: TAPLINE_ + the key
// path, e.g. TAPLINE_KAFKA_BROKERS (comma-separated), TAPLINE_KAFKA_GROUP
// (package config; EnvKeys lists them).
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	var b []byte
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	c, err := Parse(b, lookupEnv)
	if err != nil && path != "" {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, err
}

// Parse reads a configuration from YAML, applies environment overrides and defaults,
// and validates it.
func Parse(b []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	c := &Config{}
	if err := config.Decode(b, c); err != nil {
		return nil, err
	}
	if err := config.ApplyEnv(c, lookupEnv); err != nil {
		return nil, err
	}
	c.env = lookupEnv
	c.fillDefaults()
	return c, c.validate()
}

func (c *Config) fillDefaults() {
	k := &c.Kafka
	if k.Group == "" {
		k.Group = "tapline-process"
	}
	if k.TransactionalID == "" {
		host, _ := os.Hostname()
		k.TransactionalID = "tapline-process-" + host
	}
	if k.TransactionTimeout <= 0 {
		k.TransactionTimeout = 60 * time.Second
	}
	if k.SessionTimeout <= 0 {
		k.SessionTimeout = 45 * time.Second
	}
	if k.MaxPollRecords <= 0 {
		k.MaxPollRecords = 2000
	}
	if k.StateLoadTimeout <= 0 {
		k.StateLoadTimeout = 2 * time.Minute
	}
	t := &c.Topics
	for _, d := range []struct {
		v   *string
		def string
	}{{&t.Raw, schemas.TopicFramesRaw}, {&t.Frames, schemas.TopicFrames}, {&t.Commands, schemas.TopicCommands},
		{&t.Sessions, schemas.TopicSessions}, {&t.Audit, schemas.TopicAudit}, {&t.State, DefaultStateTopic},
		{&t.DeadLetter, schemas.TopicFramesDeadLetter}} {
		if *d.v == "" {
			*d.v = d.def
		}
	}
	if c.CreateTopics == nil {
		yes := true
		c.CreateTopics = &yes
	}
	if c.Partitions <= 0 {
		c.Partitions = 12
	}
}

func (c *Config) validate() error {
	var errs []string
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, "kafka.brokers: at least one broker is required (or set TAPLINE_KAFKA_BROKERS)")
	}
	if err := c.Kafka.Security.Validate(c.lookupEnv); err != nil {
		errs = append(errs, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	t := c.Topics
	seen := map[string]string{}
	for name, v := range map[string]string{"raw": t.Raw, "frames": t.Frames, "commands": t.Commands, "sessions": t.Sessions, "audit": t.Audit, "audit_ocsf": t.AuditOCSF, "state": t.State, "dead_letter": t.DeadLetter} {
		if v == "" {
			continue // only audit_ocsf may be empty: defaults fill the others
		}
		if other, ok := seen[v]; ok {
			errs = append(errs, fmt.Sprintf("topics.%s and topics.%s are both %q", name, other, v))
		}
		seen[v] = name
	}
	if _, err := integrity.ParseKeys(c.TrustedGatewayKeys); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := mask.New(c.Masking); err != nil {
		errs = append(errs, err.Error())
	}
	if sr := c.SchemaRegistry; len(sr.URLs) > 0 || sr.Username != "" || sr.PasswordEnv != "" || sr.BearerTokenEnv != "" {
		if _, err := registry.Open(c.SchemaRegistry, c.lookupEnv); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (c *Config) lookupEnv(name string) (string, bool) {
	if c.env != nil {
		return c.env(name)
	}
	return os.LookupEnv(name)
}

// pipelineConfig builds the pipeline's configuration.
func (c *Config) pipelineConfig() (pipeline.Config, error) {
	m, err := mask.New(c.Masking)
	if err != nil {
		return pipeline.Config{}, err
	}
	keys, err := integrity.ParseKeys(c.TrustedGatewayKeys)
	if err != nil {
		return pipeline.Config{}, err
	}
	var signer ed25519.PrivateKey
	if c.SigningKey != "" {
		if signer, err = keyfile.LoadOrCreate(c.SigningKey); err != nil {
			return pipeline.Config{}, err
		}
	}
	return pipeline.Config{
		Masker: m, TrustedKeys: keys, SigningKey: signer,
		IdleTimeout: c.Sessions.IdleTimeout, AbandonedRetention: c.Sessions.AbandonedRetention,
		ClosedRetention: c.Sessions.ClosedRetention, SummaryInterval: c.Sessions.SummaryInterval, HoldFor: c.Sessions.HoldFor,
		Limits:    protocol.Limits{MaxText: c.Stitch.MaxTextBytes, MaxStmtBytes: c.Stitch.MaxStatementBytes},
		FrameHook: c.FrameHook,
	}, nil
}
