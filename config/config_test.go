package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type inner struct {
	CAFile string `yaml:"ca_file"`
}

type algo string

type sample struct {
	Name  string `yaml:"name"`
	Kafka struct {
		Brokers []string      `yaml:"brokers"`
		Timeout time.Duration `yaml:"timeout"`
		TLS     *inner        `yaml:"tls"`
		Secret  string        `yaml:"-"`
	} `yaml:"kafka"`
	Create  *bool  `yaml:"create"`
	Algos   []algo `yaml:"algos"`
	Targets []struct {
		Name string `yaml:"name"`
	} `yaml:"targets"`
	Shared `yaml:",inline"`
}

type Shared struct {
	Level int32 `yaml:"level"`
}

func env(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvOverridesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("name: file\nkafka: {brokers: [a:1], timeout: 5s}\nlevel: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c sample
	err := Load(path, &c, env(map[string]string{
		"TAPLINE_KAFKA_BROKERS": "b:1, c:2", "TAPLINE_KAFKA_TLS_CA_FILE": "/ca.pem", "TAPLINE_CREATE": "false",
		"TAPLINE_ALGOS": "EdDSA,RS256", "TAPLINE_LEVEL": "3", "TAPLINE_KAFKA_SECRET": "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "file" || !slices.Equal(c.Kafka.Brokers, []string{"b:1", "c:2"}) || c.Kafka.Timeout != 5*time.Second ||
		c.Kafka.TLS == nil || c.Kafka.TLS.CAFile != "/ca.pem" || c.Create == nil || *c.Create || c.Level != 3 ||
		!slices.Equal(c.Algos, []algo{"EdDSA", "RS256"}) || c.Kafka.Secret != "" {
		t.Fatalf("%+v", c)
	}
}

func TestEnvKeysAndErrors(t *testing.T) {
	want := []string{"TAPLINE_NAME", "TAPLINE_KAFKA_BROKERS", "TAPLINE_KAFKA_TIMEOUT", "TAPLINE_KAFKA_TLS_CA_FILE",
		"TAPLINE_CREATE", "TAPLINE_ALGOS", "TAPLINE_LEVEL"}
	if got := EnvKeys(&sample{}); !slices.Equal(got, want) {
		t.Errorf("EnvKeys = %v, want %v", got, want)
	}
	var c sample
	err := ApplyEnv(&c, env(map[string]string{"TAPLINE_KAFKA_TIMEOUT": "soon", "TAPLINE_CREATE": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), `TAPLINE_KAFKA_TIMEOUT="soon": not a duration`) ||
		!strings.Contains(err.Error(), `TAPLINE_CREATE="maybe": not a boolean`) {
		t.Errorf("bad values: %v", err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("nmae: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(path, &c, nil); err == nil || !strings.Contains(err.Error(), "nmae") || !strings.Contains(err.Error(), path) {
		t.Errorf("unknown key: %v", err)
	}
	if err := Load("", &c, nil); err != nil {
		t.Errorf("no file: %v", err)
	}
}
