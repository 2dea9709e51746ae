// Package kafkaconn holds the Kafka connection settings shared by every role:
// TLS and SASL for the gateway's producer, the processors' transactional
// clients and the sink's consumer. Every role reads them from the same YAML
// shape under its kafka: section (kafka.tls, kafka.sasl); docs/configuration.md
// describes the keys.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how a client secures its broker connections. The zero value is
// plaintext without authentication, Kafka's default listener.
type Security struct {
	TLS  *TLS  `yaml:"tls"`  // nil: plaintext
	SASL *SASL `yaml:"sasl"` // nil: no authentication
}

// TLS encrypts broker connections and, with CertFile and KeyFile, authenticates
// the client by certificate (Kafka's ssl.client.auth=required, a Strimzi
// KafkaUser with authentication type tls).
type TLS struct {
	// CAFile holds the PEM certificates that sign the brokers' certificates;
	// empty uses the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client's PEM certificate and key, set together.
	// They are read again at each handshake, so a rotated secret takes effect on
	// the next connection.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates
	// (default: the host of each broker address).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL authenticates the client with a user name and password. The password
// comes from exactly one of Password (set by code only, never from a file),
// PasswordEnv and PasswordFile.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"-"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile holds the password (a trailing newline is ignored). It is read
	// again at each authentication, so a rotated secret takes effect on the next
	// connection.
	PasswordFile string `yaml:"password_file"`
	// AllowPlaintext permits SASL without TLS (Kafka's SASL_PLAINTEXT listener).
	// Off by default: PLAIN would send the password in clear and every mechanism
	// would leave the recorded frames unencrypted on the wire.
	AllowPlaintext bool `yaml:"allow_plaintext"`
}

// Mechanisms are the supported SASL mechanisms.
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// Enabled reports whether anything differs from plaintext.
func (s Security) Enabled() bool { return s.TLS != nil || s.SASL != nil }

// Validate checks the settings without building options: files are readable
// and parse, the mechanism is known, the password is available. Errors name
// the key, e.g. kafka.sasl.mechanism.
func (s Security) Validate(lookupEnv func(string) (string, bool)) error {
	_, err := s.Opts(lookupEnv)
	return err
}

// Opts returns the franz-go options for s: none for plaintext, kgo.DialTLSConfig
// for TLS, kgo.SASL for SASL. lookupEnv resolves PasswordEnv (os.LookupEnv in
// production).
func (s Security) Opts(lookupEnv func(string) (string, bool)) ([]kgo.Opt, error) {
	var errs []error
	var opts []kgo.Opt
	if s.TLS != nil {
		cfg, err := s.TLS.config()
		errs = append(errs, err)
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s.SASL != nil {
		if s.TLS == nil && !s.SASL.AllowPlaintext {
			errs = append(errs, errors.New("kafka.sasl: requires kafka.tls (set kafka.sasl.allow_plaintext: true for a SASL_PLAINTEXT listener)"))
		}
		m, err := s.SASL.mechanism(lookupEnv)
		errs = append(errs, err)
		opts = append(opts, kgo.SASL(m))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return opts, nil
}

func (t *TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	var errs []error
	if t.CAFile != "" {
		pool, err := loadCA(t.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.ca_file: %w", err))
		}
		cfg.RootCAs = pool
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		errs = append(errs, errors.New("kafka.tls.cert_file: cert_file and key_file must be set together"))
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.cert_file, key_file: %w", err))
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return cfg, errors.Join(errs...)
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func (s *SASL) mechanism(lookupEnv func(string) (string, bool)) (sasl.Mechanism, error) {
	var errs []error
	if s.Username == "" {
		errs = append(errs, errors.New("kafka.sasl.username: required"))
	}
	password, err := s.passwordSource(lookupEnv)
	errs = append(errs, err)
	if err == nil {
		_, err = password()
		errs = append(errs, err)
	}
	user := s.Username
	var m sasl.Mechanism
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		m = plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := password()
			return plain.Auth{User: user, Pass: p}, err
		})
	case "SCRAM-SHA-256":
		m = scram.Sha256(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		})
	case "SCRAM-SHA-512":
		m = scram.Sha512(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		})
	case "":
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: required (%s)", strings.Join(Mechanisms, ", ")))
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: %q not supported (%s)", s.Mechanism, strings.Join(Mechanisms, ", ")))
	}
	return m, errors.Join(errs...)
}

// passwordSource returns how to get the password at each authentication.
func (s *SASL) passwordSource(lookupEnv func(string) (string, bool)) (func() (string, error), error) {
	set := 0
	for _, v := range []string{s.Password, s.PasswordEnv, s.PasswordFile} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return nil, errors.New("kafka.sasl.password_env: one of password_env and password_file is required")
	case set > 1:
		return nil, errors.New("kafka.sasl.password_env: set only one of password_env and password_file")
	case s.Password != "":
		p := s.Password
		return func() (string, error) { return p, nil }, nil
	case s.PasswordEnv != "":
		name := s.PasswordEnv
		p, ok := lookupEnv(name)
		if !ok || p == "" {
			return nil, fmt.Errorf("kafka.sasl.password_env: %s not set", name)
		}
		return func() (string, error) { return p, nil }, nil
	}
	path := s.PasswordFile
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", fmt.Errorf("kafka.sasl.password_file: %s is empty", path)
		}
		return p, nil
	}, nil
}
