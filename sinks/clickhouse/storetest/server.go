package storetest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/testenv"
)

// ClickHouseBin is the server binary of Debian's clickhouse-server package.
const ClickHouseBin = "/usr/sbin/clickhouse-server"

// ClickHouseServer is a private ClickHouse server for tests that stop and start it,
// so they do not disturb the shared one from integration/services.sh.
type ClickHouseServer struct {
	Addr string // native protocol
	dir  string
	http int
	t    testing.TB
	cmd  *exec.Cmd
}

// StartClickHouse starts a private server on free loopback ports; it is stopped when
// the test ends. Skips when the package is not installed (fails under CI).
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test; skipped with -short")
	}
	if _, err := os.Stat(ClickHouseBin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing: run integration/services.sh up", ClickHouseBin)
		}
		t.Skipf("%s missing: run integration/services.sh up", ClickHouseBin)
	}
	s := &ClickHouseServer{dir: t.TempDir(), t: t}
	tcp, http := testenv.FreePort(t), testenv.FreePort(t)
	s.Addr, s.http = fmt.Sprintf("127.0.0.1:%d", tcp), http
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
`, s.dir, tcp, http)
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`
	writeFile(t, filepath.Join(s.dir, "config.xml"), config)
	writeFile(t, filepath.Join(s.dir, "users.xml"), users)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Start starts the server (again) and waits until it answers.
func (s *ClickHouseServer) Start() {
	s.t.Helper()
	cmd := exec.Command(ClickHouseBin, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir = s.dir
	out, err := os.OpenFile(filepath.Join(s.dir, "log", "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?query=SELECT%%201", s.http))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "log", "server.err.log"))
			s.t.Fatalf("clickhouse-server did not answer within 60s: %v\n%s", err, tail(string(log), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 30s) and waits for it to exit.
func (s *ClickHouseServer) Stop() {
	if s.cmd == nil {
		return
	}
	cmd := s.cmd
	s.cmd = nil
	cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // may have exited
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // exit status of a stopped server
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill() //nolint:errcheck // did not stop
		<-done
	}
}
