package testenv

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// SIEMTools are the consumers a security team points at tapline's topics, installed
// (not started) by integration/scripts/siem.sh.
type SIEMTools struct {
	ConnectClasspath string // Kafka Connect's class path (standalone worker, JSON converter, file sink)
	Rsyslogd         string
	RsyslogModDir    string // holds imkafka.so
	Kcat             string
	OCSFPython       string // python with ocsf-json-schema and jsonschema
}

// SIEM returns the SIEM consumer tools.
func SIEM(t testing.TB) SIEMTools {
	t.Helper()
	v := need(t, "siem", "TAPLINE_CONNECT_CLASSPATH", "TAPLINE_RSYSLOGD", "TAPLINE_RSYSLOG_MODDIR", "TAPLINE_KCAT", "TAPLINE_OCSF_PYTHON")
	cp, err := os.ReadFile(v[0])
	if err != nil {
		unavailable(t, "integration: Kafka Connect class path: %v; run `%s`", err, Hint)
	}
	return SIEMTools{ConnectClasspath: strings.TrimSpace(string(cp)), Rsyslogd: v[1], RsyslogModDir: v[2], Kcat: v[3], OCSFPython: v[4]}
}

// ChildAttrs are the process attributes of a service a test starts itself: it dies
// with the test binary and has its own process group.
func ChildAttrs() *syscall.SysProcAttr { return childAttrs() }
