// Package gateway runs tapline's edge: it loads the gateway's YAML configuration,
// builds the token verifier and the recorder, and serves the protocol listeners
// (Postgres; SSH is added beside it) and the Prometheus metrics endpoint.
package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/config"
	"github.com/tapline/tapline/ingest/edgelimit"
	httpproxy "github.com/tapline/tapline/ingest/http"
	kubeedge "github.com/tapline/tapline/ingest/kubernetes"
	"github.com/tapline/tapline/ingest/postgres"
	sshproxy "github.com/tapline/tapline/ingest/ssh"
	"github.com/tapline/tapline/kafkaconn"
	"github.com/tapline/tapline/schemas/registry"
)

// Config is the gateway's configuration file (docs/configuration.md).
type Config struct {
	// GatewayID names this instance in every frame (default: the host name).
	GatewayID string `yaml:"gateway_id"`
	// DataDir holds the signing key and generated certificates (default ./.dev).
	DataDir string `yaml:"data_dir"`
	// SigningKey is the Ed25519 key that signs session ends (default <data_dir>/gateway-signing.key,
	// created on first start).
	SigningKey string `yaml:"signing_key"`
	Kafka      Kafka  `yaml:"kafka"`
	// SchemaRegistry, when its urls are set, registers the frame schema under the
	// raw topic's subject at start and writes frames with the registry's id in the
	// Confluent framing (docs/siem.md). The processors need the same registry.
	SchemaRegistry registry.Config `yaml:"schema_registry"`
	OIDC           auth.Config     `yaml:"oidc"`
	Metrics        Metrics         `yaml:"metrics"`
	// Postgres configures the Postgres listener; absent means no Postgres listener.
	Postgres *PostgresListener `yaml:"postgres"`
	// SSH configures the SSH listener (docs/ssh.md); absent means no SSH listener.
	SSH *sshproxy.Config `yaml:"ssh"`
	// HTTP configures the HTTP edge (docs/http.md); absent means no HTTP listener.
	HTTP *httpproxy.Config `yaml:"http"`
	// Limits bound what clients can make every edge do (docs/security.md).
	Limits  edgelimit.Config `yaml:"limits"`
	Targets []Target         `yaml:"targets"`

	env func(string) (string, bool) // lookup used for password_env
}

// Kafka is where frames go.
type Kafka struct {
	Brokers          []string      `yaml:"brokers"`
	Topic            string        `yaml:"topic"`
	Mode             string        `yaml:"mode"` // strict | buffered
	ProduceTimeout   time.Duration `yaml:"produce_timeout"`
	MaxBufferedBytes int64         `yaml:"max_buffered_bytes"`
	FragmentBytes    int           `yaml:"fragment_bytes"`
	// Linger: how long a frame nobody waits for may wait to share a produce
	// request (default 5ms; 0: none). Absent and 0 differ, hence the pointer.
	Linger *time.Duration `yaml:"linger"`
	// RoundsInFlight: how many group-commit rounds may await Kafka's
	// acknowledgement at once (default 1; 0: no limit of the gateway's own).
	RoundsInFlight *int `yaml:"rounds_in_flight"`
	// Security is kafka.tls and kafka.sasl (docs/configuration.md); absent is plaintext.
	kafkaconn.Security `yaml:",inline"`
}

// Metrics is the Prometheus endpoint; an empty Listen disables it.
type Metrics struct {
	Listen string `yaml:"listen"`
	// Pprof adds Go's /debug/pprof/ handlers to the listener, to profile the
	// gateway under load. Off by default: profiles show memory and goroutine
	// stacks, so keep the listener private when it is on.
	Pprof bool `yaml:"pprof"`
}

// PostgresListener is the agent-facing side of the Postgres proxy.
type PostgresListener struct {
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files. Both empty: a self-signed certificate is
	// generated into data_dir (for development).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AllowPlaintext accepts tokens without TLS; only valid on a loopback listen address.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// AllowSelfSigned generates a self-signed certificate even on a non-loopback
	// listen address (agents must then pin it: `tapline ca`, sslmode=verify-full).
	AllowSelfSigned bool `yaml:"allow_self_signed"`
	MaxMessageBytes int  `yaml:"max_message_bytes"`
}

// Target is a system agents reach through the gateway. Exactly the section named
// by Protocol is set.
type Target struct {
	Name     string                  `yaml:"name"`
	Protocol string                  `yaml:"protocol"`
	Address  string                  `yaml:"address"`
	Groups   []string                `yaml:"groups"`
	Postgres *PostgresTarget         `yaml:"postgres"`
	SSH      *sshproxy.TargetConfig  `yaml:"ssh"`
	HTTP     *httpproxy.TargetConfig `yaml:"http"`
	// Kubernetes is how a kubernetes target (an API server reached through the
	// HTTP listener, its http: section saying how) carries the agent's identity.
	Kubernetes *kubeedge.Impersonation `yaml:"kubernetes"`
}

// PostgresTarget is how the gateway logs in to a Postgres target. The password
// comes from exactly one of Password, PasswordEnv and PasswordFile.
type PostgresTarget struct {
	Database     string `yaml:"database"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	TLS          string `yaml:"tls"` // disable | require | verify-full (default)
	CAFile       string `yaml:"ca_file"`
	// AllowMD5 and AllowCleartext answer a target asking for md5 or a cleartext
	// password; off, only SCRAM (with channel binding over TLS) is spoken.
	AllowMD5       bool `yaml:"allow_md5"`
	AllowCleartext bool `yaml:"allow_cleartext"`
}

// EnvKeys lists every environment variable the gateway reads as an override,
// in file order.
func EnvKeys() []string { return config.EnvKeys(&Config{}) }

// Defaults.
const (
	DefaultDataDir = ".dev"
	DefaultTopic   = "tapline.frames.raw"
	DefaultMode    = "strict"
)

// Load reads path, applies TAPLINE_* environment overrides and defaults, and
// validates the result. Errors name the offending key, e.g.
// "targets[1].postgres.password_env: APP_PW not set".
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, os.LookupEnv)
}

// Parse is Load on the file's content, with lookupEnv for overrides and password_env.
func Parse(b []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var cfg Config
	if err := config.Decode(b, &cfg); err != nil {
		return nil, err
	}
	if err := config.ApplyEnv(&cfg, lookupEnv); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.env = lookupEnv
	cfg.fillDefaults()
	if err := cfg.validate(lookupEnv); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

func (c *Config) fillDefaults() {
	if c.GatewayID == "" {
		c.GatewayID, _ = os.Hostname()
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.SigningKey == "" {
		c.SigningKey = filepath.Join(c.DataDir, "gateway-signing.key")
	}
	if c.Kafka.Topic == "" {
		c.Kafka.Topic = DefaultTopic
	}
	if c.Kafka.Mode == "" {
		c.Kafka.Mode = DefaultMode
	}
	if c.OIDC.GroupsClaim == "" {
		c.OIDC.GroupsClaim = auth.DefaultGroupsClaim
	}
	if p := c.Postgres; p != nil && p.MaxMessageBytes == 0 {
		p.MaxMessageBytes = postgres.DefaultMaxMessageBytes
	}
	for i := range c.Targets {
		if pg := c.Targets[i].Postgres; pg != nil && pg.TLS == "" {
			pg.TLS = string(postgres.TLSVerifyFull)
		}
	}
}

// problems collects validation errors, each prefixed with its key path.
type problems []string

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "\n  "))
}

func (c *Config) validate(lookupEnv func(string) (string, bool)) error {
	var p problems
	if c.GatewayID == "" {
		p.add("gateway_id", "empty and the host name is unknown")
	}
	if len(c.Kafka.Brokers) == 0 {
		p.add("kafka.brokers", "at least one broker (host:port) is required")
	}
	for i, b := range c.Kafka.Brokers {
		checkHostPort(&p, fmt.Sprintf("kafka.brokers[%d]", i), b)
	}
	if sr := c.SchemaRegistry; len(sr.URLs) > 0 || sr.Username != "" || sr.PasswordEnv != "" || sr.BearerTokenEnv != "" {
		if _, err := registry.Open(sr, lookupEnv); err != nil {
			p.add("schema_registry", "%v", err)
		}
	}
	if c.Kafka.Mode != "strict" && c.Kafka.Mode != "buffered" {
		p.add("kafka.mode", "%q: want strict or buffered", c.Kafka.Mode)
	}
	if c.Kafka.ProduceTimeout < 0 {
		p.add("kafka.produce_timeout", "negative")
	}
	if l := c.Kafka.Linger; l != nil && (*l < 0 || *l > time.Second) {
		p.add("kafka.linger", "%s: want 0 to 1s", *l)
	}
	if r := c.Kafka.RoundsInFlight; r != nil && (*r < 0 || *r > 64) {
		p.add("kafka.rounds_in_flight", "%d: want 0 (no limit) to 64", *r)
	}
	if c.Kafka.MaxBufferedBytes < 0 || c.Kafka.FragmentBytes < 0 {
		p.add("kafka", "max_buffered_bytes and fragment_bytes must not be negative")
	}
	if err := c.Kafka.Security.Validate(lookupEnv); err != nil {
		p = append(p, strings.Split(err.Error(), "\n")...)
	}
	if c.OIDC.Issuer == "" {
		p.add("oidc.issuer", "required (the URL of the identity provider)")
	}
	if c.OIDC.Audience == "" {
		p.add("oidc.audience", "required (the client id tokens are issued for)")
	}
	if c.Metrics.Listen != "" {
		checkHostPort(&p, "metrics.listen", c.Metrics.Listen)
	}
	if err := c.Limits.Validate(); err != nil {
		p = append(p, err.Error())
	}
	c.validatePostgresListener(&p)
	c.validateSSHListener(&p)
	c.validateHTTPListener(&p)
	c.validateTargets(&p, lookupEnv)
	return p.err()
}

func (c *Config) validatePostgresListener(p *problems) {
	l := c.Postgres
	if l == nil {
		return
	}
	if l.Listen == "" {
		p.add("postgres.listen", "required when the postgres section is present")
	} else if checkHostPort(p, "postgres.listen", l.Listen) && l.AllowPlaintext && !loopbackHost(l.Listen) {
		p.add("postgres.allow_plaintext", "only allowed on a loopback listen address, and postgres.listen is %s: tokens must travel over TLS", l.Listen)
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		p.add("postgres.tls_cert", "tls_cert and tls_key must be set together")
	}
	if l.TLSCert == "" && l.Listen != "" && !loopbackHost(l.Listen) && !l.AllowSelfSigned {
		p.add("postgres.tls_cert", "required on the non-loopback listen address %s: agents need a certificate they can verify (sslmode=verify-full); "+
			"set tls_cert and tls_key, or allow_self_signed: true to generate one agents pin with `tapline ca`", l.Listen)
	}
	for key, f := range map[string]string{"postgres.tls_cert": l.TLSCert, "postgres.tls_key": l.TLSKey} {
		if f != "" {
			checkReadable(p, key, f)
		}
	}
	if l.MaxMessageBytes < 8<<10 {
		p.add("postgres.max_message_bytes", "%d is below the minimum of 8192", l.MaxMessageBytes)
	}
}

func (c *Config) validateTargets(p *problems, lookupEnv func(string) (string, bool)) {
	seen := map[string]int{}
	for i := range c.Targets {
		t := &c.Targets[i]
		key := fmt.Sprintf("targets[%d]", i)
		switch {
		case t.Name == "":
			p.add(key+".name", "required")
		case strings.ContainsAny(t.Name, " \t\x00"):
			p.add(key+".name", "%q contains whitespace", t.Name)
		}
		if j, dup := seen[t.Name]; dup && t.Name != "" {
			p.add(key+".name", "%q is also the name of targets[%d]", t.Name, j)
		}
		seen[t.Name] = i
		if t.Address == "" {
			p.add(key+".address", "required (host:port)")
		} else {
			checkHostPort(p, key+".address", t.Address)
		}
		if len(t.Groups) == 0 {
			p.add(key+".groups", "empty: nobody could use this target (use [\"%s\"] to admit every verified identity)", auth.AnyGroup)
		}
		e, ok := edges[t.Protocol]
		switch {
		case t.Protocol == "":
			p.add(key+".protocol", "required (%s)", edgeNames())
		case !ok:
			p.add(key+".protocol", "unknown protocol %q (want %s)", t.Protocol, edgeNames())
		default:
			e(c, p, key, t, lookupEnv)
		}
	}
}

// targetCheck validates a target's protocol section against the gateway's
// configuration.
type targetCheck func(c *Config, p *problems, key string, t *Target, lookupEnv func(string) (string, bool))

// edges maps the protocol a target names to its edge's check: adding an edge
// is one entry here (and its listener in its own file), not a new case.
var edges = map[string]targetCheck{
	"postgres": (*Config).validatePostgresTarget,
	"ssh": func(c *Config, p *problems, key string, t *Target, _ func(string) (string, bool)) {
		c.validateSSHTarget(p, key, t)
	},
	"http":       (*Config).validateHTTPTarget,
	"kubernetes": (*Config).validateKubernetesTarget,
}

// edgeNames lists the protocols targets may name, for error messages.
func edgeNames() string {
	names := slices.Sorted(maps.Keys(edges))
	return strings.Join(names, ", ")
}

func (c *Config) validatePostgresTarget(p *problems, key string, t *Target, lookupEnv func(string) (string, bool)) {
	if c.Postgres == nil {
		p.add(key+".protocol", "postgres target but no postgres listener is configured (add a postgres: section with listen)")
	}
	pg := t.Postgres
	if pg == nil {
		p.add(key+".postgres", "required for protocol postgres (database, user, password_env or password_file)")
		return
	}
	key += ".postgres"
	if pg.Database == "" {
		p.add(key+".database", "required")
	}
	if pg.User == "" {
		p.add(key+".user", "required")
	}
	set := 0
	for _, v := range []string{pg.Password, pg.PasswordEnv, pg.PasswordFile} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		p.add(key+".password_env", "one of password, password_env or password_file is required")
	case set > 1:
		p.add(key+".password", "set only one of password, password_env and password_file")
	case pg.PasswordEnv != "":
		if v, ok := lookupEnv(pg.PasswordEnv); !ok || v == "" {
			p.add(key+".password_env", "%s not set", pg.PasswordEnv)
		}
	case pg.PasswordFile != "":
		checkReadable(p, key+".password_file", pg.PasswordFile)
	}
	switch postgres.TLSMode(pg.TLS) {
	case postgres.TLSDisable, postgres.TLSRequire:
	case postgres.TLSVerifyFull:
		if pg.CAFile != "" {
			if _, err := loadCAPool(pg.CAFile); err != nil {
				p.add(key+".ca_file", "%v", err)
			}
		}
	default:
		p.add(key+".tls", "%q: want disable, require or verify-full", pg.TLS)
	}
	if pg.CAFile != "" && pg.TLS != string(postgres.TLSVerifyFull) {
		p.add(key+".ca_file", "only used with tls: verify-full (tls is %s)", pg.TLS)
	}
}

func checkHostPort(p *problems, key, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		p.add(key, "%q is not host:port", addr)
		return false
	}
	_ = host
	return true
}

func loopbackHost(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkReadable(p *problems, key, path string) {
	f, err := os.Open(path)
	if err != nil {
		p.add(key, "%v", err)
		return
	}
	f.Close()
}

func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
