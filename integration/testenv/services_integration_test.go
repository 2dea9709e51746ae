package testenv_test

// Integration tests: each service `make services-up` starts is reachable and
// does what the rest of the suite relies on. They skip under -short.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/integration/testenv"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

func TestKafkaBrokerTransactions(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx := ctxT(t, 2*time.Minute)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	want, _ := testenv.Lookup("TAPLINE_KAFKA_VERSION") // e.g. 4.4.0
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			t.Fatalf("ApiVersions from broker %d: %v", v.NodeID, v.Err)
		}
		var feats []string
		for _, f := range v.Raw().FinalizedFeatures {
			feats = append(feats, fmt.Sprintf("%s=%d", f.Name, f.MaxVersionLevel))
		}
		sort.Strings(feats)
		guess := v.VersionGuess()
		t.Logf("broker %d: ApiVersions look like Kafka %s (installed: %s); finalized features: %s",
			v.NodeID, guess, want, strings.Join(feats, ", "))
		if mm := strings.Join(strings.SplitN(want, ".", 3)[:2], "."); want != "" && !strings.Contains(guess, mm) {
			t.Errorf("broker looks like Kafka %s, want %s", guess, want)
		}
	}
	if logPath, ok := testenv.Lookup("TAPLINE_KAFKA_LOG"); ok {
		if data, err := os.ReadFile(logPath); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, "Kafka version: ") {
					t.Logf("broker log: %s", line[strings.Index(line, "Kafka version: "):])
					break
				}
			}
		}
	}

	topic := uniq("testenv-txn")
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	t.Cleanup(func() { adm.DeleteTopics(context.Background(), topic) })

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(topic), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, kgo.StringRecord("committed")).FirstErr(); err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no committed record read: %v", err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		var got []string
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		if len(got) > 0 {
			if got[0] != "committed" {
				t.Fatalf("read %q, want committed", got)
			}
			return
		}
	}
}

func TestPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := ctxT(t, time.Minute)

	admin, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	defer admin.Close(ctx)
	for user, prefix := range map[string]string{pg.GWUser: "SCRAM-SHA-256$", pg.MD5User: "md5"} {
		var stored string
		if err := admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, prefix) {
			t.Errorf("%s's password is stored as %.14s..., want %s...", user, stored, prefix)
		}
	}

	// SCRAM login that owns the app database.
	gw, err := pgx.Connect(ctx, pg.GWDSN())
	if err != nil {
		t.Fatalf("gw (SCRAM) connect: %v", err)
	}
	defer gw.Close(ctx)
	table := strings.ReplaceAll(uniq("testenv"), "-", "_")
	if _, err := gw.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatalf("gw create table: %v", err)
	}
	defer gw.Exec(context.Background(), "DROP TABLE "+table)
	if _, err := gw.Exec(ctx, "INSERT INTO "+table+" VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := gw.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = 1").Scan(&v); err != nil || v != "one" {
		t.Fatalf("select: %q %v", v, err)
	}

	// The statement reached the server: log_statement=all writes it to TAPLINE_PG_LOG.
	off := pg.LogOffset(t)
	marker := uniq("testenv-marker")
	if _, err := gw.Exec(ctx, "SELECT '"+marker+"'"); err != nil {
		t.Fatal(err)
	}
	if logged := pg.WaitLog(t, off, marker, 10*time.Second); !strings.Contains(logged, pg.GWUser+"@"+pg.DB) {
		t.Errorf("log line for the marker does not name %s@%s:\n%s", pg.GWUser, pg.DB, logged)
	}

	// md5 login.
	md5c, err := pgx.Connect(ctx, pg.MD5DSN())
	if err != nil {
		t.Fatalf("md5 connect: %v", err)
	}
	var who string
	if err := md5c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != pg.MD5User {
		t.Fatalf("md5 current_user %q %v", who, err)
	}
	md5c.Close(ctx)

	// TLS with the server certificate verified.
	tlsc, err := pgx.Connect(ctx, pg.TLSDSN(pg.GWUser, pg.GWPassword, ""))
	if err != nil {
		t.Fatalf("TLS connect (verify-full against %s): %v", pg.SSLCert, err)
	}
	var ssl bool
	if err := tlsc.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pg_stat_ssl.ssl = %v, %v", ssl, err)
	}
	tlsc.Close(ctx)

	// A wrong password is refused.
	if c, err := pgx.Connect(ctx, pg.DSN(pg.GWUser, "wrong", "")); err == nil {
		c.Close(ctx)
		t.Fatal("wrong password accepted")
	}
	for _, tool := range []string{"psql", "pgbench"} {
		if _, err := os.Stat(pg.Bin + "/" + tool); err != nil {
			t.Errorf("TAPLINE_PG_BIN: %v", err)
		}
	}
}

func TestSSH(t *testing.T) {
	target := testenv.SSH(t)
	client, err := ssh.Dial("tcp", target.Addr(), target.ClientConfig(t))
	if err != nil {
		t.Fatalf("ssh dial %s: %v", target.Addr(), err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo hi; whoami")
	sess.Close()
	if err != nil || string(out) != "hi\n"+target.User+"\n" {
		t.Fatalf("echo hi; whoami: %q %v", out, err)
	}
	sftp, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sftp.Close()
	if err := sftp.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
	if !strings.HasPrefix(target.KnownHostsLine(t), "[127.0.0.1]:") {
		t.Errorf("known_hosts line %q", target.KnownHostsLine(t))
	}

	// A key the server does not know is refused.
	_, other, _ := ed25519Key(t)
	cfg := target.ClientConfig(t)
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(other)}
	if c, err := ssh.Dial("tcp", target.Addr(), cfg); err == nil {
		c.Close()
		t.Fatal("unknown key accepted")
	}
}

func TestClickHouseServer(t *testing.T) {
	ch := testenv.ClickHouse(t)
	ctx := ctxT(t, time.Minute)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("native SELECT version(): %v", err)
	}
	t.Logf("ClickHouse server %s (native %s, http %s)", version, ch.Addr, ch.HTTP)

	resp, err := http.Get("http://" + ch.HTTP + "/?query=" + url.QueryEscape("SELECT version()"))
	if err != nil {
		t.Fatalf("http: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != version {
		t.Fatalf("http SELECT version() = %q, native said %q", body, version)
	}
}

func TestCHDB(t *testing.T) {
	lib := testenv.CHDBLib(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the chDB probe")
	}
	cmd := exec.Command(goBin, "run", "./internal/chdbprobe")
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chdbprobe: %v\n%s", err, out)
	}
	version := strings.TrimSpace(string(out))
	t.Logf("chDB %s from %s", version, lib)
	if !strings.HasPrefix(version, "26.") {
		t.Fatalf("chDB version %q, want 26.x", version)
	}
}

func TestPrivateKafkaStopStart(t *testing.T) {
	b := testenv.PrivateKafka(t)
	const topic = "private"
	testenv.CreateTopic(t, b.Brokers(), topic, 1)
	// Not idempotent: an idempotent producer only fails a buffered record
	// when that is safe, so with the broker gone it would wait rather than
	// fail. A short metadata min age: franz-go fails records only after a
	// metadata refresh fails, and by default waits 5 s between refreshes.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Brokers()...), kgo.DefaultProduceTopic(topic),
		kgo.AllowAutoTopicCreation(), kgo.DisableIdempotentWrite(), kgo.RecordDeliveryTimeout(2*time.Second),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(v string, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return cl.ProduceSync(ctx, kgo.StringRecord(v)).FirstErr()
	}
	if err := produce("before", 30*time.Second); err != nil {
		t.Fatalf("produce to running broker: %v", err)
	}

	t0 := time.Now()
	b.Stop()
	t.Logf("stopped in %s", time.Since(t0).Round(time.Millisecond))
	if b.Running() {
		t.Fatal("broker still running after Stop")
	}
	t0 = time.Now()
	err = produce("while-down", 3*time.Second)
	if err == nil {
		t.Fatal("produce to a stopped broker succeeded")
	}
	if took := time.Since(t0); took > 10*time.Second {
		t.Fatalf("produce to a stopped broker took %s", took)
	}
	t.Logf("produce while down failed after %s: %v", time.Since(t0).Round(time.Millisecond), err)

	t0 = time.Now()
	b.Start()
	t.Logf("restarted in %s", time.Since(t0).Round(time.Millisecond))
	testenv.CreateTopic(t, b.Brokers(), topic, 1) // waits for its leader after log recovery
	// The client fails a record after 2 s (see above), which a broker still electing
	// leaders after log recovery can exceed on a loaded machine: retry until it takes
	// records again.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := produce("after", 10*time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("produce after restart: %v", err)
		}
		t.Logf("produce after restart: %v; retrying", err)
		time.Sleep(time.Second)
	}

	// Same data directory: the record from before the restart is still there.
	cons, err := kgo.NewClient(kgo.SeedBrokers(b.Brokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx := ctxT(t, 30*time.Second)
	seen := map[string]bool{}
	for !(seen["before"] && seen["after"]) {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %v: %v", seen, ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
}

// The SIEM consumers are installed and are the versions the tests and docs name.
func TestSIEMTools(t *testing.T) {
	tools := testenv.SIEM(t)
	jars := strings.Split(tools.ConnectClasspath, ":")
	var runtime, file, json bool
	for _, j := range jars {
		if _, err := os.Stat(j); err != nil {
			t.Fatalf("class path entry: %v", err)
		}
		runtime = runtime || strings.HasSuffix(j, "/connect-runtime-4.3.1.jar")
		file = file || strings.HasSuffix(j, "/connect-file-4.3.1.jar")
		json = json || strings.HasSuffix(j, "/connect-json-4.3.1.jar")
	}
	if !runtime || !file || !json {
		t.Errorf("Kafka Connect class path lacks runtime %v, file %v or json %v: %s", runtime, file, json, tools.ConnectClasspath)
	}
	if _, err := os.Stat(tools.RsyslogModDir + "/imkafka.so"); err != nil {
		t.Errorf("imkafka: %v", err)
	}
	for _, c := range [][]string{{tools.Rsyslogd, "-v"}, {tools.Kcat, "-V"},
		{tools.OCSFPython, "-c", "import jsonschema, ocsf_json_schema; ocsf_json_schema.get_ocsf_schema(version='1.7.0')"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v\n%s", c, err, out)
		}
	}
}
