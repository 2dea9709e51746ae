package kafkaconn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/tapline/tapline/kafkaconn"
	"github.com/tapline/tapline/kafkaconn/kafkaconntest"
)

func noEnv(string) (string, bool) { return "", false }

func TestPlaintextHasNoOptions(t *testing.T) {
	opts, err := kafkaconn.Security{}.Opts(noEnv)
	if err != nil || len(opts) != 0 {
		t.Fatalf("Opts() = %d options, %v; want none", len(opts), err)
	}
}

func TestYAMLShape(t *testing.T) {
	var s kafkaconn.Security
	dec := yaml.NewDecoder(strings.NewReader(`
tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name: kafka, insecure_skip_verify: true}
sasl: {mechanism: SCRAM-SHA-512, username: u, password_env: PW, password_file: /pw, allow_plaintext: true}
`))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	want := kafkaconn.TLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "kafka", InsecureSkipVerify: true}
	if *s.TLS != want {
		t.Errorf("tls = %+v, want %+v", *s.TLS, want)
	}
	wantS := kafkaconn.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordEnv: "PW", PasswordFile: "/pw", AllowPlaintext: true}
	if *s.SASL != wantS {
		t.Errorf("sasl = %+v, want %+v", *s.SASL, wantS)
	}
	// The password itself never comes from a file.
	if err := yaml.NewDecoder(strings.NewReader("sasl: {password: x}")).Decode(&s); err != nil || s.SASL.Password != "" {
		t.Errorf("sasl.password was read from YAML (%q, %v)", s.SASL.Password, err)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) { return map[string]string{"KAFKA_PW": "pw"}[k], k == "KAFKA_PW" }
	tlsOn := &kafkaconn.TLS{}
	for _, tc := range []struct {
		name string
		sec  kafkaconn.Security
		want []string
	}{
		{"unknown mechanism", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "GSSAPI", Username: "u", PasswordEnv: "KAFKA_PW"}},
			[]string{`kafka.sasl.mechanism: "GSSAPI" not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)`}},
		{"no mechanism", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Username: "u", PasswordEnv: "KAFKA_PW"}},
			[]string{"kafka.sasl.mechanism: required"}},
		{"env not set", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "PLAIN", Username: "u", PasswordEnv: "NOPE"}},
			[]string{"kafka.sasl.password_env: NOPE not set"}},
		{"no password", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "PLAIN", Username: "u"}},
			[]string{"kafka.sasl.password_env: one of password_env and password_file is required"}},
		{"two passwords", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "PLAIN", Username: "u", PasswordEnv: "KAFKA_PW", PasswordFile: notPEM}},
			[]string{"set only one of password_env and password_file"}},
		{"missing password file", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: filepath.Join(dir, "missing")}},
			[]string{"kafka.sasl.password_file:", "no such file"}},
		{"no username", kafkaconn.Security{TLS: tlsOn, SASL: &kafkaconn.SASL{Mechanism: "PLAIN", PasswordEnv: "KAFKA_PW"}},
			[]string{"kafka.sasl.username: required"}},
		{"sasl without tls", kafkaconn.Security{SASL: &kafkaconn.SASL{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordEnv: "KAFKA_PW"}},
			[]string{"kafka.sasl: requires kafka.tls", "allow_plaintext"}},
		{"missing ca", kafkaconn.Security{TLS: &kafkaconn.TLS{CAFile: filepath.Join(dir, "ca.pem")}},
			[]string{"kafka.tls.ca_file:", "no such file"}},
		{"ca not pem", kafkaconn.Security{TLS: &kafkaconn.TLS{CAFile: notPEM}},
			[]string{"kafka.tls.ca_file:", "holds no PEM certificate"}},
		{"cert without key", kafkaconn.Security{TLS: &kafkaconn.TLS{CertFile: notPEM}},
			[]string{"kafka.tls.cert_file: cert_file and key_file must be set together"}},
		{"bad key pair", kafkaconn.Security{TLS: &kafkaconn.TLS{CertFile: notPEM, KeyFile: notPEM}},
			[]string{"kafka.tls.cert_file, key_file:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.sec.Opts(env)
			if err == nil {
				t.Fatal("Opts succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestValidSettings(t *testing.T) {
	env := func(k string) (string, bool) { return "pw", k == "KAFKA_PW" }
	for _, sec := range []kafkaconn.Security{
		{TLS: &kafkaconn.TLS{}},
		{TLS: &kafkaconn.TLS{}, SASL: &kafkaconn.SASL{Mechanism: "scram-sha-512", Username: "u", PasswordEnv: "KAFKA_PW"}},
		{SASL: &kafkaconn.SASL{Mechanism: "PLAIN", Username: "u", Password: "pw", AllowPlaintext: true}},
	} {
		opts, err := sec.Opts(env)
		if err != nil {
			t.Errorf("%+v: %v", sec, err)
		}
		if want := btoi(sec.TLS != nil) + btoi(sec.SASL != nil); len(opts) != want {
			t.Errorf("%+v: %d options, want %d", sec, len(opts), want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// produceAndRead produces one record to topic through a client built with sec
// and reads it back; it returns the first error.
func produceAndRead(t *testing.T, brokers []string, sec kafkaconn.Security) error {
	t.Helper()
	opts, err := sec.Opts(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("t"),
		kgo.ConsumeTopics("t"), kgo.RequestRetries(1), kgo.RetryTimeout(3*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("over tls")}).FirstErr(); err != nil {
		return err
	}
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		return err
	}
	if got := fs.Records(); len(got) != 1 || string(got[0].Value) != "over tls" {
		t.Fatalf("read back %v", got)
	}
	return nil
}

// ping connects through a client built with sec and returns the error.
func ping(t *testing.T, brokers []string, sec kafkaconn.Security) error {
	t.Helper()
	opts, err := sec.Opts(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestSCRAMOverTLS(t *testing.T) {
	k := kafkaconntest.Start(t, kfake.SeedTopics(1, "t"))
	if err := produceAndRead(t, k.Brokers, k.Security); err != nil {
		t.Fatalf("TLS + SCRAM-SHA-256: %v", err)
	}

	wrong := k.Security
	wrong.SASL = &kafkaconn.SASL{Mechanism: "SCRAM-SHA-256", Username: kafkaconntest.User, Password: "wrong"}
	// kfake drops the connection on a failed login (a broker answers
	// SASL_AUTHENTICATION_FAILED); either way the client must not get through.
	if err := ping(t, k.Brokers, wrong); err == nil {
		t.Error("wrong password: connected")
	}

	noTrust := k.Security
	noTrust.TLS = &kafkaconn.TLS{} // system roots do not know the test CA
	if err := ping(t, k.Brokers, noTrust); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: err = %v, want a certificate error", err)
	}
}

func TestPasswordFileIsReadAtEachLogin(t *testing.T) {
	k := kafkaconntest.Start(t, kfake.SeedTopics(1, "t"))
	pw := k.Security.SASL.PasswordFile
	if err := os.WriteFile(pw, []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := k.Security.Opts(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// The secret is rotated after the client was configured.
	if err := os.WriteFile(pw, []byte(kafkaconntest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(k.Brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestClientCertificate(t *testing.T) {
	k := kafkaconntest.StartMutualTLS(t, kfake.SeedTopics(1, "t"))
	if err := produceAndRead(t, k.Brokers, k.Security); err != nil {
		t.Fatalf("TLS client certificate: %v", err)
	}
	noCert := k.Security
	noCert.TLS = &kafkaconn.TLS{CAFile: k.CAFile}
	if err := ping(t, k.Brokers, noCert); err == nil {
		t.Error("a client without certificate was accepted")
	}
}
