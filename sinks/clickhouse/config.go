package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Schema sets.
const (
	SchemaFull   = "full"   // ClickHouse 24.8 LTS and newer, and chDB
	SchemaLegacy = "legacy" // reduced tables for old servers (18.16); tests only
)

// Config is what a Store needs besides its connection.
type Config struct {
	// Schema selects the migration set: SchemaFull (default) or SchemaLegacy.
	Schema    string    `yaml:"schema"`
	Retention Retention `yaml:"retention"`
	Storage   Storage   `yaml:"storage"`
}

// Retention is how many days each table keeps rows (TTL ... DELETE); 0 keeps them
// forever. Applied by Migrate with ALTER TABLE ... MODIFY TTL when it changed.
type Retention struct {
	FramesDays          int `yaml:"frames_days"`
	CommandsDays        int `yaml:"commands_days"`
	SessionsDays        int `yaml:"sessions_days"`
	IntegrityAlertsDays int `yaml:"integrity_alerts_days"`
}

// Storage moves older parts to a cold volume (object storage) through a storage
// policy defined in the server's configuration (deploy/clickhouse/storage.xml).
// Empty Policy: tables stay on the default policy and no TTL ... TO VOLUME is set.
type Storage struct {
	Policy        string `yaml:"policy"`          // e.g. "tiered"
	ColdVolume    string `yaml:"cold_volume"`     // default "cold"
	ColdAfterDays int    `yaml:"cold_after_days"` // parts older than this move to ColdVolume
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Config) setDefaults() {
	if c.Schema == "" {
		c.Schema = SchemaFull
	}
	if c.Storage.ColdVolume == "" {
		c.Storage.ColdVolume = "cold"
	}
}

func (c *Config) validate() error {
	if c.Schema != SchemaFull && c.Schema != SchemaLegacy {
		return fmt.Errorf("clickhouse: schema %q: want %q or %q", c.Schema, SchemaFull, SchemaLegacy)
	}
	r := c.Retention
	if r.FramesDays < 0 || r.CommandsDays < 0 || r.SessionsDays < 0 || r.IntegrityAlertsDays < 0 {
		return errors.New("clickhouse: retention days must not be negative")
	}
	if c.Schema == SchemaLegacy && r != (Retention{}) {
		return errors.New("clickhouse: the legacy schema has no TTL; leave retention empty")
	}
	s := c.Storage
	if s.Policy == "" {
		if s.ColdAfterDays != 0 {
			return errors.New("clickhouse: storage.cold_after_days needs storage.policy")
		}
		return nil
	}
	if !identRe.MatchString(s.Policy) || !identRe.MatchString(s.ColdVolume) {
		return fmt.Errorf("clickhouse: storage policy %q / volume %q: want identifiers", s.Policy, s.ColdVolume)
	}
	if s.ColdAfterDays <= 0 {
		return errors.New("clickhouse: storage.policy needs storage.cold_after_days > 0")
	}
	if c.Schema == SchemaLegacy {
		return errors.New("clickhouse: the legacy schema has no storage policies")
	}
	return nil
}

// ServerConfig is how to reach a ClickHouse server or cluster.
type ServerConfig struct {
	Addr        []string      `yaml:"addr"`     // host:port of the native protocol, default 127.0.0.1:9000
	Database    string        `yaml:"database"` // created by Migrate if missing; default "tapline"
	Username    string        `yaml:"username"`
	Password    string        `yaml:"-"`
	PasswordEnv string        `yaml:"password_env"`
	TLS         bool          `yaml:"tls"`
	CAFile      string        `yaml:"ca_file"`
	DialTimeout time.Duration `yaml:"dial_timeout"` // default 5s
	// ReadTimeout bounds waiting for the server during a query; default 5m.
	ReadTimeout time.Duration `yaml:"read_timeout"`
}
