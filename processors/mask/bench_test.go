package mask

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// maskMix is a realistic mix of what the masker reads, in frame-sized chunks: psql
// output (a result table with an address now and then), shell output (ls -l, cat of
// an application log) and JSON API bodies, with a few secrets among them.
func maskMix() [][]byte {
	var psql, shell, logs, js strings.Builder
	psql.WriteString(" id |   name    |          email           |  city   | balance \n----+-----------+--------------------------+---------+---------\n")
	for i := range 400 {
		email := "-"
		if i%10 == 0 {
			email = fmt.Sprintf("user%d@example.com", i)
		}
		fmt.Fprintf(&psql, " %3d | customer%-2d | %-24s | Berlin  | %7d.%02d\n", i, i%100, email, i*37%10000, i%100)
	}
	for i := range 300 {
		fmt.Fprintf(&shell, "-rw-r--r-- 1 app app %8d Mar %2d 12:%02d release-2026.%02d.%d.tar.gz\r\n", i*4096+17, i%28+1, i%60, i%12+1, i)
	}
	for i := range 400 {
		fmt.Fprintf(&logs, "2026-03-01T12:%02d:%02d.%03dZ INFO http request method=GET path=/api/v1/orders/%d status=200 duration_ms=%d remote=10.0.%d.%d\r\n",
			i/60%60, i%60, i%1000, 1000+i, i%250, i%256, (i*7)%256)
		if i%100 == 0 {
			logs.WriteString("2026-03-01T12:00:00Z WARN retrying with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\n")
		}
	}
	js.WriteString(`{"orders":[`)
	for i := range 200 {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `{"id":%d,"status":"shipped","items":[{"sku":"SKU-%05d","qty":%d,"price":"%d.99"}],"note":"leave at the door","created_at":"2026-03-01T12:00:%02dZ"}`, i, i*13, i%5+1, i%90+9, i%60)
	}
	js.WriteString(`],"next":"/api/v1/orders?page=2"}`)
	var out [][]byte
	for _, s := range []string{psql.String(), shell.String(), logs.String(), js.String()} {
		for len(s) > 0 {
			n := min(16<<10, len(s))
			out = append(out, []byte(s[:n]))
			s = s[n:]
		}
	}
	return out
}

// BenchmarkMask is the masking throughput over maskMix with the default rules, as
// terminal output is masked (same length). MB/s is per core (the benchmark runs
// on one goroutine).
func BenchmarkMask(b *testing.B) {
	m, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	r := m.Rules("box")
	chunks := maskMix()
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		for _, c := range chunks {
			r.Text(c, protocol.SameLength, protocol.Counts{})
		}
	}
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(total), "ns/byte")
	// MB/s is wall time, which a loaded machine inflates; the process's CPU time
	// is what one core spends.
	b.ReportMetric(float64(total)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
}

// cpuTime is the CPU time (user and system) the test process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMaskMixHasSecrets keeps the benchmark honest: its mix has secrets to find.
func TestMaskMixHasSecrets(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	counts := protocol.Counts{}
	for _, c := range maskMix() {
		m.Rules("box").Text(c, protocol.SameLength, counts)
	}
	if counts[Email] < 30 || counts[JWT] < 3 {
		t.Errorf("mix masks %v", counts)
	}
}

// BenchmarkMaskStream is BenchmarkMask as SSH terminal output is masked: the mix
// in 4 KiB channel data frames of one stream, each scanned with the window
// before it and checked for a secret in progress at its end (the hold-back).
func BenchmarkMaskStream(b *testing.B) {
	m, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var frames []*schemas.Frame
	total := 0
	for _, c := range maskMix() {
		for len(c) > 0 {
			n := min(4<<10, len(c))
			f := sshFrame(sshproto.ChannelData, schemas.Server, c[:n])
			f.Seq = int64(len(frames))
			frames = append(frames, f)
			total += n
			c = c[n:]
		}
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		conv := sshConv()
		for _, f := range frames {
			g := *f
			m.Frame(&g, "box", conv)
			if h, ok := conv.(protocol.Holding); ok {
				h.Hold(&g)
			}
		}
	}
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(total)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
}
