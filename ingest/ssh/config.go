package sshproxy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for Config.
const (
	DefaultUserSeparator = "+"
	DefaultDialTimeout   = 10 * time.Second
	DefaultAuthTimeout   = time.Minute
	hostKeyFileName      = "ssh_host_ed25519_key"
)

// Config is the gateway's `ssh:` section.
type Config struct {
	// Listen is the address agents connect to, e.g. 127.0.0.1:2222.
	Listen string `yaml:"listen"`
	// HostKey is the gateway's SSH host private key (OpenSSH or PEM format). Empty:
	// <data_dir>/ssh_host_ed25519_key, generated on first start and kept.
	HostKey string `yaml:"host_key"`
	// UserSeparator splits the SSH user name "login+target" (default "+").
	UserSeparator string `yaml:"user_separator"`
	// DialTimeout bounds connecting and authenticating to a target (default 10s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// AuthTimeout bounds an agent's handshake and authentication (default 1m).
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// Ciphers are those offered to every agent. Empty: chosen by the agent's
	// identification line (defaultAgentCiphers).
	Ciphers []string `yaml:"ciphers"`
}

// TargetConfig is the `ssh:` section of an SSH target: how the gateway logs in to
// it and what agents may do beyond shells, commands and subsystems.
type TargetConfig struct {
	User        string `yaml:"user"`
	KeyFile     string `yaml:"key_file"`
	PasswordEnv string `yaml:"password_env"`
	KnownHosts  string `yaml:"known_hosts"`
	// InsecureAcceptAnyHostKey skips verifying the target's host key. Meant for
	// throwaway test targets only; every connection logs a warning.
	InsecureAcceptAnyHostKey bool `yaml:"insecure_accept_any_host_key"`
	AllowPortForwarding      bool `yaml:"allow_port_forwarding"`
	AllowAgentForwarding     bool `yaml:"allow_agent_forwarding"`
}

// Target is one SSH target: the name agents ask for and where it lives.
type Target struct {
	Name    string
	Address string // host:port
	SSH     TargetConfig
}

func (c *Config) fillDefaults() error {
	if c.UserSeparator == "" {
		c.UserSeparator = DefaultUserSeparator
	}
	if strings.ContainsAny(c.UserSeparator, "@ \t:/") {
		return fmt.Errorf("ssh: user_separator %q must not contain '@', ':', '/' or spaces (OpenSSH splits user@host at '@'); use '+' or '%%'", c.UserSeparator)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	return checkCiphers(c.Ciphers)
}

// checkCiphers refuses a cipher the SSH library does not implement, at start
// rather than at every agent's handshake.
func checkCiphers(names []string) error {
	known := ssh.SupportedAlgorithms().Ciphers
	for _, n := range names {
		if !slices.Contains(known, n) {
			return fmt.Errorf("ssh: ciphers: %q is not supported; choose from %s", n, strings.Join(known, ", "))
		}
	}
	return nil
}

// upstreamAuth turns a target's credentials into auth methods, failing early on a
// missing key file or an empty password variable rather than at the first login.
func (t *Target) upstreamAuth() ([]ssh.AuthMethod, error) {
	c := t.SSH
	if c.User == "" {
		return nil, fmt.Errorf("ssh target %q: ssh.user is required", t.Name)
	}
	if c.KnownHosts != "" && c.InsecureAcceptAnyHostKey {
		return nil, fmt.Errorf("ssh target %q: set either ssh.known_hosts or ssh.insecure_accept_any_host_key, not both", t.Name)
	}
	if c.KnownHosts == "" && !c.InsecureAcceptAnyHostKey {
		return nil, fmt.Errorf("ssh target %q: ssh.known_hosts is required to verify the target's host key", t.Name)
	}
	if c.KnownHosts != "" {
		if _, err := os.Stat(c.KnownHosts); err != nil {
			return nil, fmt.Errorf("ssh target %q: known_hosts: %w", t.Name, err)
		}
	}
	var methods []ssh.AuthMethod
	if c.KeyFile != "" {
		signer, err := loadSigner(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ssh target %q: %w", t.Name, err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if c.PasswordEnv != "" {
		pw := os.Getenv(c.PasswordEnv)
		if pw == "" {
			return nil, fmt.Errorf("ssh target %q: environment variable %s (ssh.password_env) is empty", t.Name, c.PasswordEnv)
		}
		methods = append(methods, ssh.Password(pw), ssh.KeyboardInteractive(answerAll(pw)))
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("ssh target %q: set ssh.key_file or ssh.password_env", t.Name)
	}
	return methods, nil
}

func loadSigner(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("key_file %s is passphrase-protected; the gateway needs an unencrypted key", path)
	}
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", path, err)
	}
	return signer, nil
}

// answerAll answers every keyboard-interactive prompt with the password, for targets
// that only offer keyboard-interactive (PAM).
func answerAll(pw string) ssh.KeyboardInteractiveChallenge {
	return func(_, _ string, questions []string, _ []bool) ([]string, error) {
		answers := make([]string, len(questions))
		for i := range answers {
			answers[i] = pw
		}
		return answers, nil
	}
}

// splitUser parses the SSH user name "target" or "login+target" (separator sep).
// The last separator splits, so a target name must not contain it; a login may.
func splitUser(user, sep string) (login, target string) {
	i := strings.LastIndex(user, sep)
	if i < 0 {
		return "", user
	}
	return user[:i], user[i+len(sep):]
}
