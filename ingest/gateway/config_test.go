package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/kafkaconn/kafkaconntest"
)

const example = `
gateway_id: gw-1
data_dir: ./.dev
kafka: {brokers: ["127.0.0.1:9092"], topic: tapline.frames.raw, mode: strict, produce_timeout: 10s, max_buffered_bytes: 67108864, fragment_bytes: 921600}
oidc: {issuer: "http://127.0.0.1:5556", audience: tapline, groups_claim: groups}
metrics: {listen: "127.0.0.1:9464"}
postgres: {listen: "127.0.0.1:6432", tls_cert: "", tls_key: "", allow_plaintext: false, max_message_bytes: 67108864}
targets:
  - name: app
    protocol: postgres
    address: "127.0.0.1:5432"
    groups: [dba]
    postgres: {database: app, user: tapline_gw, password_env: APP_DB_PASSWORD, tls: require}
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseExample(t *testing.T) {
	cfg, err := Parse([]byte(example), env(map[string]string{"APP_DB_PASSWORD": "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.ProduceTimeout != 10*time.Second || cfg.Postgres.MaxMessageBytes != 64<<20 || cfg.Targets[0].Postgres.TLS != "require" {
		t.Fatalf("parsed %+v", cfg)
	}
	targets, err := cfg.postgresTargets()
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := targets[0].Password(); err != nil || pw != "pw" {
		t.Fatalf("password %q, %v", pw, err)
	}
	if cfg.SigningKey != filepath.Join(".dev", "gateway-signing.key") {
		t.Fatalf("signing key default %q", cfg.SigningKey)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", strings.Replace(example, "groups: [dba]", "groups: [dba]\n    colour: red", 1),
			[]string{"field colour not found"}},
		{"unknown nested key", strings.Replace(example, "tls: require", "tls: require, sslmode: x", 1),
			[]string{"field sslmode not found"}},
		{"env not set", example, []string{"targets[0].postgres.password_env: APP_DB_PASSWORD not set"}},
		{"bad tls mode", strings.Replace(example, "tls: require", "tls: prefer", 1),
			[]string{`targets[0].postgres.tls: "prefer": want disable, require or verify-full`}},
		{"plaintext off loopback", strings.Replace(strings.Replace(example, "allow_plaintext: false", "allow_plaintext: true", 1), `listen: "127.0.0.1:6432"`, `listen: "0.0.0.0:6432"`, 1),
			[]string{"postgres.allow_plaintext: only allowed on a loopback listen address"}},
		{"generated certificate off loopback", strings.Replace(example, `listen: "127.0.0.1:6432"`, `listen: "0.0.0.0:6432"`, 1),
			[]string{"postgres.tls_cert: required on the non-loopback listen address 0.0.0.0:6432", "allow_self_signed: true", "tapline ca"}},
		{"two targets, second broken", example + `  - name: app
    protocol: postgres
    address: nowhere
    groups: []
`, []string{`targets[1].name: "app" is also the name of targets[0]`, `targets[1].address: "nowhere" is not host:port`,
			"targets[1].groups: empty", "targets[1].postgres: required for protocol postgres"}},
		{"unknown protocol", strings.Replace(example, "protocol: postgres", "protocol: mysql", 1),
			[]string{`targets[0].protocol: unknown protocol "mysql"`}},
		{"bad mode", strings.Replace(example, "mode: strict", "mode: yolo", 1), []string{`kafka.mode: "yolo"`}},
		{"missing issuer", strings.Replace(example, `issuer: "http://127.0.0.1:5556", `, "", 1), []string{"oidc.issuer: required"}},
		{"registry secret not set", example + "schema_registry: {urls: [\"http://sr:8081\"], username: key, password_env: SR_SECRET}\n",
			[]string{"schema_registry: ", "SR_SECRET"}},
		{"password twice", strings.Replace(example, "password_env: APP_DB_PASSWORD", "password_env: APP_DB_PASSWORD, password: x", 1),
			[]string{"targets[0].postgres.password: set only one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"APP_DB_PASSWORD": "pw"}
			if tc.name == "env not set" {
				e = nil
			}
			_, err := Parse([]byte(tc.yaml), env(e))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Parse([]byte(example), env(map[string]string{
		"APP_DB_PASSWORD":                    "pw",
		"TAPLINE_KAFKA_BROKERS":              "10.0.0.1:9092, 10.0.0.2:9092",
		"TAPLINE_KAFKA_MODE":                 "buffered",
		"TAPLINE_KAFKA_PRODUCE_TIMEOUT":      "3s",
		"TAPLINE_POSTGRES_MAX_MESSAGE_BYTES": "1048576",
		"TAPLINE_OIDC_AUDIENCE":              "other",
		"TAPLINE_GATEWAY_ID":                 "gw-9",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"10.0.0.1:9092", "10.0.0.2:9092"}) || cfg.Kafka.Mode != "buffered" ||
		cfg.Kafka.ProduceTimeout != 3*time.Second || cfg.Postgres.MaxMessageBytes != 1<<20 ||
		cfg.OIDC.Audience != "other" || cfg.GatewayID != "gw-9" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	_, err = Parse([]byte(example), env(map[string]string{"APP_DB_PASSWORD": "pw", "TAPLINE_POSTGRES_ALLOW_PLAINTEXT": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), `TAPLINE_POSTGRES_ALLOW_PLAINTEXT="maybe": not a boolean`) {
		t.Fatalf("bad override: %v", err)
	}
}

// docs/configuration.md lists exactly the overrides the gateway reads.
func TestEnvKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(TAPLINE_[A-Z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	for _, k := range EnvKeys() {
		if !documented[k] {
			t.Errorf("%s is read but not documented in docs/configuration.md", k)
		}
	}
	for _, k := range []string{"TAPLINE_KAFKA_BROKERS", "TAPLINE_POSTGRES_LISTEN", "TAPLINE_OIDC_ISSUER", "TAPLINE_METRICS_LISTEN"} {
		if !slices.Contains(EnvKeys(), k) {
			t.Errorf("EnvKeys lacks %s", k)
		}
	}
}

func TestParseKafkaSecurity(t *testing.T) {
	k := kafkaconntest.Start(t) // for its CA file
	dir, ca := k.Dir, k.CAFile
	secured := strings.Replace(example, "fragment_bytes: 921600}", `fragment_bytes: 921600,
  tls: {ca_file: `+ca+`, server_name: kafka.internal},
  sasl: {mechanism: SCRAM-SHA-512, username: tapline-gateway, password_env: KAFKA_PASSWORD}}`, 1)
	e := map[string]string{"APP_DB_PASSWORD": "pw", "KAFKA_PASSWORD": "kpw"}
	cfg, err := Parse([]byte(secured), env(e))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.TLS == nil || cfg.Kafka.TLS.CAFile != ca || cfg.Kafka.TLS.ServerName != "kafka.internal" ||
		cfg.Kafka.SASL == nil || cfg.Kafka.SASL.Mechanism != "SCRAM-SHA-512" || cfg.Kafka.SASL.PasswordEnv != "KAFKA_PASSWORD" {
		t.Fatalf("kafka security parsed as tls=%+v sasl=%+v", cfg.Kafka.TLS, cfg.Kafka.SASL)
	}
	if plain, err := Parse([]byte(example), env(e)); err != nil || plain.Kafka.Security.Enabled() {
		t.Fatalf("default is not plaintext: %+v, %v", plain.Kafka.Security, err)
	}

	for name, tc := range map[string]struct {
		yaml string
		env  map[string]string
		want string
	}{
		"unknown key under tls":  {strings.Replace(secured, "server_name:", "servername:", 1), e, "field servername not found"},
		"unknown key under sasl": {strings.Replace(secured, "username:", "user:", 1), e, "field user not found"},
		"password in the file":   {strings.Replace(secured, "password_env: KAFKA_PASSWORD", "password: hunter2", 1), e, "field password not found"},
		"bad mechanism":          {strings.Replace(secured, "SCRAM-SHA-512", "GSSAPI", 1), e, `kafka.sasl.mechanism: "GSSAPI" not supported`},
		"password env not set":   {secured, map[string]string{"APP_DB_PASSWORD": "pw"}, "kafka.sasl.password_env: KAFKA_PASSWORD not set"},
		"missing ca":             {strings.Replace(secured, ca, filepath.Join(dir, "nope.crt"), 1), e, "kafka.tls.ca_file:"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// A self-signed certificate off loopback is accepted only when asked for.
func TestSelfSignedOffLoopbackWhenAllowed(t *testing.T) {
	y := strings.Replace(example, `listen: "127.0.0.1:6432"`, `listen: "0.0.0.0:6432"`, 1)
	y = strings.Replace(y, "allow_plaintext: false", "allow_plaintext: false, allow_self_signed: true", 1)
	if _, err := Parse([]byte(y), env(map[string]string{"APP_DB_PASSWORD": "pw"})); err != nil {
		t.Fatal(err)
	}
}

func TestKafkaLinger(t *testing.T) {
	parse := func(line string) (*Config, error) {
		yaml := fmt.Sprintf(`
data_dir: /tmp/x
kafka: {brokers: ["127.0.0.1:1"]%s}
oidc: {issuer: "http://127.0.0.1:1", audience: tapline}
postgres: {listen: "127.0.0.1:0"}
targets:
  - {name: app, protocol: postgres, address: "127.0.0.1:5432", groups: [dba], postgres: {database: app, user: gw, password: pw, tls: disable}}
`, line)
		return Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	}
	for line, want := range map[string]time.Duration{"": 0, ", linger: 0s": -1, ", linger: 20ms": 20 * time.Millisecond} {
		cfg, err := parse(line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if got := linger(cfg.Kafka.Linger); got != want {
			t.Errorf("%q: recorder linger %s, want %s", line, got, want)
		}
	}
	if _, err := parse(", linger: 2s"); err == nil || !strings.Contains(err.Error(), "kafka.linger") {
		t.Errorf("linger 2s accepted: %v", err)
	}
}
