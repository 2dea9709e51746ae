package postgres_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pgEnv is the test Postgres (integration/services.sh).
type pgEnv struct {
	Host, Port, DB           string
	AdminUser, AdminPassword string
	GWUser, GWPassword       string
	MD5User, MD5Password     string
	SSLCert, Log             string
}

func (p pgEnv) addr() string { return p.Host + ":" + p.Port }

func services(t *testing.T) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (skipped with -short)")
	}
	path := os.Getenv("TAPLINE_SERVICES_ENV")
	if path == "" {
		path = "../../.services/env"
	}
	f, err := os.Open(path)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("services not up: %v", err)
		}
		t.Skipf("services not up (run integration/services.sh up): %v", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && !strings.HasPrefix(k, "#") {
			m[k] = strings.Trim(v, "'\"")
		}
	}
	return m
}

func postgresEnv(t *testing.T) pgEnv {
	m := services(t)
	return pgEnv{Host: m["TAPLINE_PG_HOST"], Port: m["TAPLINE_PG_PORT"], DB: m["TAPLINE_PG_DB"],
		AdminUser: m["TAPLINE_PG_ADMIN_USER"], AdminPassword: m["TAPLINE_PG_ADMIN_PASSWORD"],
		GWUser: m["TAPLINE_PG_GW_USER"], GWPassword: m["TAPLINE_PG_GW_PASSWORD"],
		MD5User: m["TAPLINE_PG_MD5_USER"], MD5Password: m["TAPLINE_PG_MD5_PASSWORD"],
		SSLCert: m["TAPLINE_PG_SSL_CERT"], Log: m["TAPLINE_PG_LOG"]}
}

func kafkaBrokers(t *testing.T) []string {
	return strings.Split(services(t)["TAPLINE_KAFKA_BROKERS"], ",")
}

// privateKafka is a broker of the test's own, to stop and start.
type privateKafka struct {
	t       *testing.T
	dir     string
	brokers []string
	script  string
}

func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	m := services(t)
	k := &privateKafka{t: t, dir: t.TempDir(), script: m["TAPLINE_SERVICES_SCRIPT"]}
	out, err := exec.Command(k.script, "kafka-instance", "start", k.dir).Output()
	if err != nil {
		t.Fatalf("start private kafka: %v", err)
	}
	lines := strings.Fields(string(out))
	k.brokers = []string{lines[len(lines)-1]}
	t.Cleanup(k.Stop)
	k.waitReady()
	return k
}

func (k *privateKafka) Stop() {
	if out, err := exec.Command(k.script, "kafka-instance", "stop", k.dir).CombinedOutput(); err != nil {
		k.t.Errorf("stop private kafka: %v\n%s", err, out)
	}
}

func (k *privateKafka) Start() {
	if out, err := exec.Command(k.script, "kafka-instance", "start", k.dir).CombinedOutput(); err != nil {
		k.t.Fatalf("restart private kafka: %v\n%s", err, out)
	}
	k.waitReady()
}

func (k *privateKafka) waitReady() {
	deadline := time.Now().Add(90 * time.Second)
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
			cancel()
			cl.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("private kafka at %v not ready: %v", k.brokers, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
