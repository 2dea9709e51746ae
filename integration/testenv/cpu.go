package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/integration/procstat"
)

// SelfCPU is the CPU time (user and system, all threads) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcessCPU is the CPU time (user and system, all threads) process pid has used,
// from /proc/PID/stat, at 10 ms resolution.
func ProcessCPU(pid int) (time.Duration, error) {
	st, err := procstat.Read(pid)
	return procstat.Duration(st.Own), err
}

// KafkaPID is the test broker's process id, or 0 when the services do not say:
// benchmarks then report no broker CPU.
func KafkaPID() int { return servicePID("kafka", "pid") }

// ClickHousePID is the test ClickHouse server's process id, or 0.
func ClickHousePID() int { return servicePID("clickhouse", "clickhouse.pid") }

// servicePID reads a pid file that services.sh keeps in the service's directory.
func servicePID(service, file string) int {
	dir, ok := Lookup("TAPLINE_SERVICES_DIR")
	if !ok {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, service, file))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// CPUUse is CPU time spent by this process and by the test services between two
// readings (zero for a service whose process is not known).
type CPUUse struct{ Self, Kafka, ClickHouse time.Duration }

// CPUMeter reads CPU time of this process and of the broker and ClickHouse server,
// so that benchmarks can report CPU per unit of work next to rates: steadier than
// rates on a machine shared with other work.
type CPUMeter struct {
	kafka, clickhouse int
	start             CPUUse
}

// StartCPU starts a meter.
func StartCPU() *CPUMeter {
	m := &CPUMeter{kafka: KafkaPID(), clickhouse: ClickHousePID()}
	m.start = m.read()
	return m
}

func (m *CPUMeter) read() CPUUse {
	of := func(pid int) time.Duration {
		if pid == 0 {
			return 0
		}
		d, _ := ProcessCPU(pid)
		return d
	}
	return CPUUse{Self: SelfCPU(), Kafka: of(m.kafka), ClickHouse: of(m.clickhouse)}
}

// Used is the CPU time spent since the meter started.
func (m *CPUMeter) Used() CPUUse { return m.read().Sub(m.start) }

// Add returns u + v, each process's time apart.
func (u CPUUse) Add(v CPUUse) CPUUse {
	return CPUUse{Self: u.Self + v.Self, Kafka: u.Kafka + v.Kafka, ClickHouse: u.ClickHouse + v.ClickHouse}
}

// Sub returns u − v, each process's time apart.
func (u CPUUse) Sub(v CPUUse) CPUUse {
	return CPUUse{Self: u.Self - v.Self, Kafka: u.Kafka - v.Kafka, ClickHouse: u.ClickHouse - v.ClickHouse}
}

// Report adds "µs/<unit>" metrics for n units of work: this process's (named
// self), and the broker's and ClickHouse server's when their processes are known
// and used any CPU.
func (u CPUUse) Report(b *testing.B, prefix, unit string, n float64) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	b.ReportMetric(per(u.Self), prefix+"self-µs/"+unit)
	if u.Kafka > 0 {
		b.ReportMetric(per(u.Kafka), prefix+"kafka-µs/"+unit)
	}
	if u.ClickHouse > 0 {
		b.ReportMetric(per(u.ClickHouse), prefix+"clickhouse-µs/"+unit)
	}
}
