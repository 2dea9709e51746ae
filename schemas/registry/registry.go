// Package registry registers tapline's Avro schemas with a Confluent-compatible
// schema registry (Confluent Schema Registry, Apicurio Registry's ccompat API,
// Redpanda's built-in registry) through franz-go's sr client, and gives codecs that
// write the registry's ids in the Confluent wire format (magic byte 0, 4-byte
// big-endian id, Avro binary body) and read values written with any id whose schema
// is a version tapline knows. docs/siem.md explains subjects and framing.
package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/tapline/tapline/schemas"
)

// Subject is the subject a topic's values are registered under: Confluent's
// TopicNameStrategy, the default of Confluent's, Apicurio's and Redpanda's serdes,
// so their consumers find the schema without configuration.
func Subject(topic string) string { return topic + "-value" }

// Config is how to reach the registry.
type Config struct {
	// URLs of the registry's Confluent-compatible REST API, e.g.
	// http://schema-registry:8081, http://apicurio:8080/apis/ccompat/v7,
	// http://redpanda:8081.
	URLs []string `yaml:"urls"`
	// Username and PasswordEnv (the name of the environment variable holding the
	// password) for HTTP basic auth, as Confluent Cloud's API keys use.
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// BearerTokenEnv names the environment variable holding a bearer token.
	BearerTokenEnv string `yaml:"bearer_token_env"`
}

// Registry is a registry client with a cache of the ids it resolved.
type Registry struct {
	cl *sr.Client

	mu  sync.Mutex
	fps map[uint32]uint64 // id → fingerprint of its schema
}

// Open returns a client for cfg; lookupEnv resolves the secrets' variables
// (os.LookupEnv when nil).
func Open(cfg Config, lookupEnv func(string) (string, bool)) (*Registry, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("schema_registry.urls: at least one URL is required")
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URLs...)}
	if cfg.Username != "" {
		pass, ok := lookupEnv(cfg.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("schema_registry.password_env: set %s to the password of %s", orName(cfg.PasswordEnv), cfg.Username)
		}
		opts = append(opts, sr.BasicAuth(cfg.Username, pass))
	}
	if cfg.BearerTokenEnv != "" {
		tok, ok := lookupEnv(cfg.BearerTokenEnv)
		if !ok {
			return nil, fmt.Errorf("schema_registry.bearer_token_env: set %s to the registry's token", cfg.BearerTokenEnv)
		}
		opts = append(opts, sr.BearerToken(tok))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return New(cl), nil
}

// New wraps an sr client.
func New(cl *sr.Client) *Registry { return &Registry{cl: cl, fps: map[uint32]uint64{}} }

// Register registers an Avro schema under topic's subject and returns its id. It is
// idempotent: a registry answers a schema it already holds with its existing id.
// A registry enforcing compatibility rejects an incompatible change here, before
// anything is written with it.
func (r *Registry) Register(ctx context.Context, topic, schema string) (uint32, error) {
	ss, err := r.cl.CreateSchema(ctx, Subject(topic), sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		return 0, fmt.Errorf("register the schema of %s as subject %s: %w", topic, Subject(topic), err)
	}
	if ss.ID <= 0 {
		return 0, fmt.Errorf("register the schema of %s: the registry returned id %d", topic, ss.ID)
	}
	return uint32(ss.ID), nil
}

// Codec registers c's current schema under topic's subject and returns c writing
// that id in the Confluent framing and reading values written with any id of a
// known schema version.
func Codec[T any](ctx context.Context, r *Registry, topic string, c *schemas.Codec[T]) (*schemas.Codec[T], error) {
	id, err := r.Register(ctx, topic, c.Schema())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.fps[id] = c.Fingerprint()
	r.mu.Unlock()
	return c.WithSchemaID(id).WithResolver(r.Resolver(ctx)), nil
}

// Reader returns c reading Confluent-framed values by looking their ids up in the
// registry (it writes as c does).
func Reader[T any](ctx context.Context, r *Registry, c *schemas.Codec[T]) *schemas.Codec[T] {
	return c.WithResolver(r.Resolver(ctx))
}

// Resolver maps a registry id to the fingerprint of its schema, asking the
// registry once per id; ctx bounds those requests.
func (r *Registry) Resolver(ctx context.Context) func(uint32) (uint64, bool) {
	return func(id uint32) (uint64, bool) {
		fp, err := r.Fingerprint(ctx, id)
		return fp, err == nil
	}
}

// Fingerprint returns the CRC-64-AVRO fingerprint of the schema registered as id.
func (r *Registry) Fingerprint(ctx context.Context, id uint32) (uint64, error) {
	r.mu.Lock()
	fp, ok := r.fps[id]
	r.mu.Unlock()
	if ok {
		return fp, nil
	}
	s, err := r.cl.SchemaByID(ctx, int(id))
	if err != nil {
		return 0, fmt.Errorf("schema id %d: %w", id, err)
	}
	if s.Type != sr.TypeAvro {
		return 0, fmt.Errorf("schema id %d is %s, not Avro", id, s.Type)
	}
	c, err := goavro.NewCodec(s.Schema)
	if err != nil {
		return 0, fmt.Errorf("schema id %d: %w", id, err)
	}
	fp = uint64(c.Rabin)
	r.mu.Lock()
	r.fps[id] = fp
	r.mu.Unlock()
	return fp, nil
}

func orName(s string) string {
	if s == "" {
		return "password_env"
	}
	return s
}
