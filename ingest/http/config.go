package httpproxy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyIdleTimeout   = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultUpstreamTimeout   = 60 * time.Second
	DefaultDialTimeout       = 10 * time.Second
	DefaultMaxWSMessageBytes = 16 << 20
	DefaultBodyChunkBytes    = 256 << 10
	DefaultWholeBodyBytes    = 1 << 20
	DefaultRoutingMode       = RoutingBoth
	minMaxHeaderBytes        = 4 << 10
	maxDenialsInFlight       = 256
	endTimeout               = 15 * time.Second
	tokenCacheSize           = 4 // verified tokens remembered per connection
)

// Routing modes: how a request names its target.
const (
	RoutingHost = "host" // <target>.<base_domain>
	RoutingPath = "path" // /<target>/..., the prefix stripped before forwarding
	RoutingBoth = "both" // host when it matches base_domain, else path
)

// Config is the gateway's `http:` section.
type Config struct {
	// Listen is the address agents connect to, e.g. 0.0.0.0:8443.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files. Both empty: a self-signed certificate
	// is generated into data_dir (for development).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AllowSelfSigned generates a self-signed certificate on a non-loopback address.
	AllowSelfSigned bool `yaml:"allow_self_signed"`
	// AllowPlaintext serves plain HTTP, only on a loopback listen address (dev).
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// Routing is host, path or both (default both).
	Routing string `yaml:"routing"`
	// BaseDomain is the domain under which <target>.<base_domain> names a
	// target (wildcard DNS pointing at the gateway). Required for host routing.
	BaseDomain string `yaml:"base_domain"`
	// MaxHeaderBytes bounds a request head (default 64 KiB): larger is 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout cuts agents that do not send a request head in time.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// BodyIdleTimeout cuts agents whose request body stalls that long (408).
	BodyIdleTimeout time.Duration `yaml:"body_idle_timeout"`
	// IdleTimeout closes keep-alive connections idle that long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// UpstreamTimeout bounds the wait for a target's response head (504).
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// DialTimeout bounds connecting to a target, TLS handshake included.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MaxWSMessageBytes bounds one WebSocket message (close 1009 beyond).
	MaxWSMessageBytes int `yaml:"max_ws_message_bytes"`
	// BodyChunkBytes is the most body bytes read (and recorded) at once.
	BodyChunkBytes int `yaml:"body_chunk_bytes"`
	// WholeBodyBytes: a body of known length up to this is recorded as one
	// message, so the processors can mask its JSON or form fields.
	WholeBodyBytes int `yaml:"whole_body_bytes"`
}

func (c *Config) fillDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Routing == "" {
		c.Routing = DefaultRoutingMode
	}
	def(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	def(&c.MaxWSMessageBytes, DefaultMaxWSMessageBytes)
	def(&c.BodyChunkBytes, DefaultBodyChunkBytes)
	def(&c.WholeBodyBytes, DefaultWholeBodyBytes)
	dur(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur(&c.BodyIdleTimeout, DefaultBodyIdleTimeout)
	dur(&c.IdleTimeout, DefaultIdleTimeout)
	dur(&c.UpstreamTimeout, DefaultUpstreamTimeout)
	dur(&c.DialTimeout, DefaultDialTimeout)
	c.BaseDomain = strings.Trim(strings.ToLower(c.BaseDomain), ".")
}

// Validate checks the section; keys in errors are relative to `http.`.
func (c *Config) Validate() error {
	var errs []error
	switch c.Routing {
	case "", RoutingHost, RoutingPath, RoutingBoth:
	default:
		errs = append(errs, fmt.Errorf("http.routing: %q: want host, path or both", c.Routing))
	}
	if c.Routing == RoutingHost && c.BaseDomain == "" {
		errs = append(errs, errors.New("http.base_domain: required with routing: host (targets are <target>.<base_domain>)"))
	}
	if c.MaxHeaderBytes != 0 && c.MaxHeaderBytes < minMaxHeaderBytes {
		errs = append(errs, fmt.Errorf("http.max_header_bytes: %d is below the minimum of %d", c.MaxHeaderBytes, minMaxHeaderBytes))
	}
	for k, v := range map[string]time.Duration{"read_header_timeout": c.ReadHeaderTimeout, "body_idle_timeout": c.BodyIdleTimeout,
		"idle_timeout": c.IdleTimeout, "upstream_timeout": c.UpstreamTimeout, "dial_timeout": c.DialTimeout} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("http.%s: negative", k))
		}
	}
	if c.MaxWSMessageBytes < 0 || c.BodyChunkBytes < 0 || c.WholeBodyBytes < 0 {
		errs = append(errs, errors.New("http: max_ws_message_bytes, body_chunk_bytes and whole_body_bytes must not be negative"))
	}
	return errors.Join(errs...)
}

// TargetConfig is the `http:` section of an HTTP target: how the gateway
// reaches it and which credentials it adds.
type TargetConfig struct {
	// Scheme is https (default) or http.
	Scheme string `yaml:"scheme"`
	// CAFile is a PEM bundle trusted for the target's certificate instead of
	// the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name verified in the target's certificate (default:
	// the address's host).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify skips verifying the target's certificate. Throwaway
	// targets only; every request logs a warning.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// HTTP2 negotiates h2 with TLS targets through ALPN (default true).
	HTTP2 *bool `yaml:"http2"`
	// BasePath is prepended to every forwarded path.
	BasePath string `yaml:"base_path"`
	// Host overrides the Host header sent (default: the address).
	Host string `yaml:"host"`
	// Credentials the gateway adds; the agent's token is never forwarded.
	Bearer     *Secret     `yaml:"bearer"`
	Basic      *BasicAuth  `yaml:"basic"`
	Header     *HeaderAuth `yaml:"header"`
	ClientCert *ClientCert `yaml:"client_cert"`
}

// BasicAuth is a user and password sent as Authorization: Basic.
type BasicAuth struct {
	User     string `yaml:"user"`
	Password Secret `yaml:"password"`
}

// HeaderAuth is a named header carrying a secret, e.g. X-API-Key.
type HeaderAuth struct {
	Name  string `yaml:"name"`
	Value Secret `yaml:"value"`
}

// ClientCert is a TLS client certificate for the target; both files are
// re-read when they change.
type ClientCert struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Target is one HTTP target.
type Target struct {
	Name    string
	Address string // host:port
	Groups  []string
	HTTP    TargetConfig
}

// ValidateTarget checks a target's http section; key prefixes errors.
func ValidateTarget(key string, t *TargetConfig, lookupEnv func(string) (string, bool)) []string {
	var p []string
	add := func(k, format string, args ...any) { p = append(p, key+"."+k+": "+fmt.Sprintf(format, args...)) }
	switch t.Scheme {
	case "", "https", "http":
	default:
		add("scheme", "%q: want https or http", t.Scheme)
	}
	if t.Scheme == "http" && (t.CAFile != "" || t.ClientCert != nil || t.InsecureSkipVerify) {
		add("scheme", "http: ca_file, client_cert and insecure_skip_verify need https")
	}
	if t.CAFile != "" && t.InsecureSkipVerify {
		add("insecure_skip_verify", "set either ca_file or insecure_skip_verify, not both")
	}
	if t.BasePath != "" && !strings.HasPrefix(t.BasePath, "/") {
		add("base_path", "%q must start with /", t.BasePath)
	}
	n := 0
	if t.Bearer != nil {
		n++
		p = append(p, t.Bearer.validate(key+".bearer", lookupEnv)...)
	}
	if t.Basic != nil {
		n++
		if t.Basic.User == "" {
			add("basic.user", "required")
		}
		p = append(p, t.Basic.Password.validate(key+".basic.password", lookupEnv)...)
	}
	if t.Header != nil {
		n++
		if t.Header.Name == "" {
			add("header.name", "required (e.g. X-API-Key)")
		}
		p = append(p, t.Header.Value.validate(key+".header.value", lookupEnv)...)
	}
	if n > 1 {
		add("bearer", "set at most one of bearer, basic and header")
	}
	if c := t.ClientCert; c != nil && (c.CertFile == "" || c.KeyFile == "") {
		add("client_cert", "cert_file and key_file are both required")
	}
	return p
}
