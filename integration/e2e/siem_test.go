//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/crypto/ssh"

	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/processors/audit"
	"github.com/tapline/tapline/processors/ocsf"
	"github.com/tapline/tapline/query/api"
)

// consumerWait bounds how long a consumer may take to start and deliver. A Connect
// worker's JVM takes 10–20 s to start on an idle 2-core machine and has been seen to
// take 90 s on a badly overloaded one; only a failing run waits this long.
const consumerWait = 4 * time.Minute

// recordID matches an audit record id (docs/audit-format.md) wherever a consumer
// wrote it.
var recordID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9]+/[a-z.]+(/[a-z_]+)?`)

// A recorded psql session and a recorded ssh session reach the SIEM consumers a
// security team would run — Kafka Connect (JSON converter, file sink) and rsyslog
// (imkafka) — in both formats, every audit record and OCSF event exactly once.
func TestSIEMConsumersGetEveryRecordOnce(t *testing.T) {
	t.Parallel()
	tools := testenv.SIEM(t)
	h := pipeline(t)
	dir := t.TempDir()
	topics := []string{h.topics.Audit, h.topics.AuditOCSF}
	// Consumers first: the JVM starts while the sessions run.
	connect := startConnect(t, tools, h.brokers, dir, topics)
	rsyslog := startRsyslog(t, tools, h.brokers, dir, topics)

	sub := "siem-" + randHex(3)
	token := h.token(t, sub, pgGroup, sshGroup)
	if run := h.psql(t, token, sub, "SELECT 'siem-probe' AS probe", "SELECT * FROM siem_no_such_table"); !strings.Contains(run.stdout, "siem-probe") {
		t.Fatalf("psql through the gateway: %v\n%s\n%s", run.err, run.stdout, run.stderr)
	}
	if out, code := h.sshExec(t, token, "echo siem-ssh; exit 3"); code != 3 || !strings.Contains(out, "siem-ssh") {
		t.Fatalf("ssh through the gateway: exit %d, output %q", code, out)
	}
	want := h.auditIDs(t, h.waitSessions(t, sub, 2))
	t.Logf("%d audit records for %s", len(want), sub)

	for _, c := range []*consumer{connect, rsyslog} {
		c.waitFor(t, want)
		c.stop(t)
		c.check(t, want)
	}
	checkKcat(t, tools, h.brokers, h.topics.AuditOCSF, want)
	validateOCSF(t, tools, rsyslog.ocsf, want)
}

// validateOCSF checks the sessions' OCSF events, as a consumer received them,
// against the published OCSF schema.
func validateOCSF(t *testing.T, tools testenv.SIEMTools, file string, want map[string]string) {
	t.Helper()
	var in bytes.Buffer
	n := 0
	for _, l := range readLines(file) {
		if ids := distinct(recordID.FindAllString(l, -1)); len(ids) == 1 && want[ids[0]] != "" {
			in.WriteString(l + "\n")
			n++
		}
	}
	if n != len(want) {
		t.Errorf("%s holds %d of the sessions' %d OCSF events", file, n, len(want))
	}
	cmd := exec.Command(tools.OCSFPython, "../../processors/ocsf/testdata/validate.py", ocsf.Version)
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("OCSF %s validation of the %d events the consumer received: %v\n%s", ocsf.Version, n, err, out)
	}
}

// consumer is a SIEM-side process writing what it read to files, one per format.
type consumer struct {
	name    string
	cmd     *exec.Cmd
	done    chan error
	log     string
	audit   string // file with the tapline.audit records
	ocsf    string // file with the OCSF events
	parsed  func(line string) error
	stopped bool
}

// startConnect runs a standalone Kafka Connect worker with the JSON converter and
// one FileStreamSink connector per topic.
func startConnect(t *testing.T, tools testenv.SIEMTools, brokers []string, dir string, topics []string) *consumer {
	t.Helper()
	d := filepath.Join(dir, "connect")
	must(t, os.MkdirAll(d, 0o755))
	c := &consumer{name: "kafka-connect", log: filepath.Join(d, "connect.log"),
		audit: filepath.Join(d, "audit.txt"), ocsf: filepath.Join(d, "ocsf.txt"), parsed: connectParsed}
	write(t, filepath.Join(d, "log4j2.properties"), `rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
`)
	// Sink consumers read committed records only: tapline writes in transactions.
	write(t, filepath.Join(d, "worker.properties"), fmt.Sprintf(`bootstrap.servers=%s
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
offset.storage.file.filename=%s/offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:0
plugin.discovery=only_scan
consumer.isolation.level=read_committed
consumer.auto.offset.reset=earliest
`, strings.Join(brokers, ","), d))
	group := "siem-connect-" + randHex(4)
	dropGroups(t, brokers, "connect-"+group+"-0", "connect-"+group+"-1")
	args := []string{"-Xms64m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(d, "log4j2.properties"),
		"-cp", tools.ConnectClasspath, "org.apache.kafka.connect.cli.ConnectStandalone", filepath.Join(d, "worker.properties")}
	for i, topic := range topics {
		file := []string{c.audit, c.ocsf}[i]
		props := filepath.Join(d, fmt.Sprintf("sink-%d.properties", i))
		write(t, props, fmt.Sprintf(`name=%s-%d
connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector
tasks.max=1
topics=%s
file=%s
`, group, i, topic, file))
		args = append(args, props)
	}
	c.start(t, exec.Command("java", args...))
	return c
}

// connectParsed: the JSON converter turned the record into a map, which the file
// sink writes as Java prints it ({key=value, …}).
func connectParsed(line string) error {
	if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") || !strings.Contains(line, "=") {
		return fmt.Errorf("not a converted map: %q", line)
	}
	return nil
}

// startRsyslog runs rsyslogd with one imkafka input per topic, each into its file,
// as a log shipper would.
func startRsyslog(t *testing.T, tools testenv.SIEMTools, brokers []string, dir string, topics []string) *consumer {
	t.Helper()
	d := filepath.Join(dir, "rsyslog")
	must(t, os.MkdirAll(d, 0o755))
	c := &consumer{name: "rsyslog", log: filepath.Join(d, "rsyslog.log"),
		audit: filepath.Join(d, "audit.log"), ocsf: filepath.Join(d, "ocsf.log"), parsed: jsonParsed}
	group := "siem-rsyslog-" + randHex(4)
	dropGroups(t, brokers, group+"-0", group+"-1")
	var b strings.Builder
	fmt.Fprintf(&b, `global(workDirectory=%q maxMessageSize="1m")
module(load="imkafka")
template(name="msg" type="string" string="%%msg%%\n")
`, d)
	for i, topic := range topics {
		file := []string{c.audit, c.ocsf}[i]
		fmt.Fprintf(&b, `ruleset(name="r%[1]d") { action(type="omfile" file=%[2]q template="msg") }
input(type="imkafka" topic=%[3]q broker=[%[4]q] consumergroup="%[5]s-%[1]d" ruleset="r%[1]d"
      confParam=["isolation.level=read_committed", "auto.offset.reset=earliest"])
`, i, file, topic, strings.Join(brokers, ","), group)
	}
	conf := filepath.Join(d, "rsyslog.conf")
	write(t, conf, b.String())
	if out, err := exec.Command(tools.Rsyslogd, "-N1", "-f", conf, "-M", tools.RsyslogModDir).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd rejects its configuration: %v\n%s", err, out)
	}
	c.start(t, exec.Command(tools.Rsyslogd, "-n", "-f", conf, "-i", filepath.Join(d, "pid"), "-M", tools.RsyslogModDir))
	return c
}

// dropGroups deletes the consumers' groups from the shared broker when the test ends.
func dropGroups(t *testing.T, brokers []string, groups ...string) {
	t.Cleanup(func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(cl).DeleteGroups(ctx, groups...)
	})
}

func jsonParsed(line string) error {
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		return fmt.Errorf("not JSON: %v: %q", err, line)
	}
	return nil
}

func (c *consumer) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	logf, err := os.Create(c.log)
	must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = testenv.ChildAttrs()
	must(t, cmd.Start())
	c.cmd, c.done = cmd, make(chan error, 1)
	go func() { c.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		if !c.stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", c.name, c.log, tailFile(c.log, 40))
		}
	})
}

// waitFor waits until both files hold every wanted record (or the consumer died).
func (c *consumer) waitFor(t *testing.T, want map[string]string) {
	t.Helper()
	err := poll(consumerWait, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("%s exited: %v", c.name, err)
		default:
		}
		for _, file := range []string{c.audit, c.ocsf} {
			seen := lineIDs(readLines(file))
			for id := range want {
				if seen[id] == 0 {
					return fmt.Errorf("%s: %s not there yet (%d records so far)", file, id, len(seen))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
}

// stop ends the consumer the way its operator would (SIGTERM), so that it commits
// its offsets and flushes its files. waitFor saw every record in the files
// already, so a consumer whose own shutdown hangs (Kafka Connect's Jetty has
// been seen to, in a shutdown hook, for minutes) is killed after stopWait and
// noted: what it delivered is still checked, and that is what this test is about.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopWait):
		t.Logf("%s did not exit %s after SIGTERM; killed", c.name, stopWait)
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.stopped = true
}

// stopWait bounds a consumer's shutdown (a Connect worker takes 1–3 s).
const stopWait = 45 * time.Second

// check: every wanted record once in each file, parsed by the consumer, and in the
// OCSF file with the class its type maps to.
func (c *consumer) check(t *testing.T, want map[string]string) {
	t.Helper()
	for _, file := range []string{c.audit, c.ocsf} {
		lines := readLines(file)
		count := map[string]int{}
		for _, l := range lines {
			ids := distinct(recordID.FindAllString(l, -1))
			if len(ids) != 1 {
				t.Errorf("%s: a line with %d record ids: %q", file, len(ids), l)
				continue
			}
			if _, ours := want[ids[0]]; !ours {
				continue // another test's session on the shared topics
			}
			count[ids[0]]++
			if count[ids[0]] == 1 && want[ids[0]] == audit.TypeCommand+"/SSH" && testing.Verbose() {
				t.Logf("%s %s: %s", c.name, filepath.Base(file), l)
			}
			if err := c.parsed(l); err != nil {
				t.Errorf("%s: %v", file, err)
			}
			if file == c.ocsf && !strings.Contains(l, fmt.Sprintf("class_uid%s%d", sep(c), classOf(want[ids[0]]))) {
				t.Errorf("%s: %s (%s) is not OCSF class %d: %q", file, ids[0], want[ids[0]], classOf(want[ids[0]]), l)
			}
		}
		for id := range want {
			if count[id] != 1 {
				t.Errorf("%s: %s arrived %d times, want once", file, id, count[id])
			}
		}
	}
}

func sep(c *consumer) string {
	if c.name == "kafka-connect" {
		return "="
	}
	return `":`
}

// classOf is the OCSF class of an audit record type on these sessions.
func classOf(typ string) int {
	switch typ {
	case audit.TypeCommand + "/POSTGRES":
		return ocsf.ClassDatastoreActivity
	case audit.TypeCommand + "/SSH":
		return ocsf.ClassSSHActivity
	case audit.TypeIntegrity:
		return ocsf.ClassDetectionFinding
	}
	return ocsf.ClassAuthentication
}

// checkKcat runs the quick look docs/siem.md shows and finds the sessions' events.
func checkKcat(t *testing.T, tools testenv.SIEMTools, brokers []string, topic string, want map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consumerWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, tools.Kcat, "-b", strings.Join(brokers, ","), "-C", "-t", topic,
		"-X", "isolation.level=read_committed", "-o", "beginning", "-e", "-q", "-f", "%k %s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	seen := lineIDs(strings.Split(string(out), "\n"))
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("kcat shows %s %d times, want once", id, seen[id])
		}
	}
}

// auditIDs reads the audit topic (committed records) until it holds the end of
// every session, and returns the sessions' record ids with their types (commands
// with their protocol).
func (h *harness) auditIDs(t *testing.T, sessions []api.Session) map[string]string {
	t.Helper()
	ours := map[string]bool{}
	for _, s := range sessions {
		ours[s.SessionID] = true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.topics.Audit),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	must(t, err)
	defer cl.Close()
	ids, ended := map[string]string{}, map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), pipelineWait)
	defer cancel()
	for len(ended) < len(ours) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the audit topic has the end of %d of %d sessions after %s", len(ended), len(ours), pipelineWait)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("reading %s: %v", h.topics.Audit, errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var a audit.Record
			if err := json.Unmarshal(r.Value, &a); err != nil || !ours[a.SessionID] {
				return
			}
			typ := a.Type
			if typ == audit.TypeCommand {
				typ += "/" + a.Protocol
			}
			ids[a.ID] = typ
			if a.Type == audit.TypeSessionEnd {
				ended[a.SessionID] = true
			}
		})
	}
	return ids
}

// sshExec runs a command with the stock OpenSSH client through the gateway, the
// token typed at the password prompt, and returns its output and exit code.
func (h *harness) sshExec(t *testing.T, token, command string) (string, int) {
	t.Helper()
	return h.sshRun(t, token, nil, command)
}

// sshRun runs the stock ssh client with extra options (such as -tt for a terminal).
func (h *harness) sshRun(t *testing.T, token string, opts []string, command string) (string, int) {
	t.Helper()
	d := t.TempDir()
	host, port := splitAddr(t, h.sshAddr)
	write(t, filepath.Join(d, "known_hosts"), fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(h.sshHostKey)))
	write(t, filepath.Join(d, "token"), token)
	askpass := filepath.Join(d, "askpass")
	must(t, os.WriteFile(askpass, []byte("#!/bin/sh\nexec cat '"+filepath.Join(d, "token")+"'\n"), 0o700))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"-F", "/dev/null", "-p", port,
		"-o", "UserKnownHostsFile=" + filepath.Join(d, "known_hosts"), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "PubkeyAuthentication=no",
		"-o", "PreferredAuthentications=keyboard-interactive,password", "-o", "NumberOfPasswordPrompts=1",
		"-o", "ConnectTimeout=10"}, opts...)
	cmd := exec.CommandContext(ctx, "ssh", append(args, h.target.User+"+"+sshTarget+"@"+host, command)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "HOME="+d)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("ssh: %v\n%s", err, out.String())
	return "", -1
}

func lineIDs(lines []string) map[string]int {
	seen := map[string]int{}
	for _, l := range lines {
		for _, id := range distinct(recordID.FindAllString(l, -1)) {
			seen[id]++
		}
	}
	return seen
}

func distinct(ids []string) []string {
	var out []string
	for _, id := range ids {
		if !contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readLines returns a file's complete lines (a line still being written is left out).
func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return nil
	}
	return strings.Split(string(b), "\n")
}

func write(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
