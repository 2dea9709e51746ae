//go:build chdb

package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// BenchmarkReadPath reads one long Postgres session (pgbench -S shaped: a Query
// and four answer frames per transaction; BENCH_READ_FRAMES frames, default
// 1,000,000) through the query API on embedded chDB, as verify, the text replay
// and the frames NDJSON do, and reports frames/s, the time to the first byte and
// the peak Go heap during the read (constant memory: it must not grow with the
// session). Run once:
// go test -tags chdb -run '^$' -bench ReadPath -benchtime 1x ./query/api/
func BenchmarkReadPath(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_READ_FRAMES")); err == nil && v > 0 {
		n = v
	}
	store := realStore(b)
	e := newEnvStore(b, Config{}, store)
	id := writeLongSession(b, store, e.iss.URL(), "bench-reader", n)
	tok := e.token("bench-reader")
	for _, c := range []struct{ name, path string }{
		{"frames", "/frames"},
		{"replay", "/replay?format=text"},
		{"verify", "/verify"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var first, total time.Duration
			var peak uint64
			for range b.N {
				stop := sampleHeap(&peak)
				f, t := timedGet(b, e.url+"/api/v1/sessions/"+id+c.path, tok)
				stop()
				first, total = first+f, total+t
			}
			b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "frames/s")
			b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N), "ms-to-first")
			b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
		})
	}
}

// timedGet reads a whole response and returns the times to its first byte and
// to its end.
func timedGet(b *testing.B, url, tok string) (first, total time.Duration) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		b.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	br := bufio.NewReaderSize(resp.Body, 1<<16)
	if _, err := br.Peek(1); err != nil {
		b.Fatal(err)
	}
	first = time.Since(t0)
	var tail bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && line[0] == '{' && bytes.Contains(line, []byte(`"problems"`)) {
			tail.Write(line) // verify's report
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			b.Fatal(err)
		}
	}
	if tail.Len() > 0 {
		var r struct {
			Problems []json.RawMessage `json:"problems"`
		}
		if err := json.Unmarshal(tail.Bytes(), &r); err != nil || len(r.Problems) != 0 {
			b.Fatalf("verify: %v %s", err, tail.Bytes())
		}
	}
	return first, time.Since(t0)
}

// sampleHeap records the peak of the Go heap in use until stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	runtime.GC()
	done, wg := make(chan struct{}), sync.WaitGroup{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			*peak = max(*peak, m.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// writeLongSession stores a sealed, signed session of n frames in batches, as
// the sink would, without holding it all in memory.
func writeLongSession(b *testing.B, store clickhouse.Store, issuer, sub string, n int) string {
	ctx := context.Background()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	answers := []struct {
		kind    string
		payload []byte
	}{
		{"RowDescription", sessiontest.Must((&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}).Encode(nil))},
		{"DataRow", sessiontest.Must((&pgproto3.DataRow{Values: [][]byte{[]byte("-2712")}}).Encode(nil))},
		{"CommandComplete", sessiontest.Must((&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil))},
		{"ReadyForQuery", sessiontest.Must((&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(nil))},
	}
	var (
		batch       []schemas.Frame
		prev        = schemas.ZeroHash
		seq         int64
		bytesClient int64
		bytesServer int64
	)
	add := func(f schemas.Frame) {
		f.SessionID, f.Seq, f.TS, f.Protocol, f.GatewayID, f.Final = id, seq, now.Add(time.Duration(seq)*10*time.Microsecond), schemas.Postgres, "gw-bench", true
		if err := schemas.Seal(&f, prev); err != nil {
			b.Fatal(err)
		}
		if f.Direction == schemas.Client {
			bytesClient += int64(len(f.Payload))
		} else {
			bytesServer += int64(len(f.Payload))
		}
		prev, seq = f.Hash, seq+1
		batch = append(batch, f)
		if len(batch) == 50_000 {
			flushFrames(ctx, b, store, &batch)
		}
	}
	start := schemas.SessionStart{Issuer: issuer, Subject: sub, Target: "app"}
	startPayload, _ := json.Marshal(map[string]any{"start": start})
	add(schemas.Frame{Direction: schemas.Server, Kind: schemas.KindSessionStart, Payload: startPayload, Start: &start})
	for i := 0; seq < int64(n-1); i++ {
		q := sessiontest.Must((&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i%100000+1) + ";"}).Encode(nil))
		add(schemas.Frame{Direction: schemas.Client, Kind: "Query", Payload: q})
		for _, a := range answers {
			if seq < int64(n-1) {
				add(schemas.Frame{Direction: schemas.Server, Kind: a.kind, Payload: a.payload})
			}
		}
	}
	end := schemas.SessionEnd{Reason: "client closed", LastSeq: seq - 1, Frames: seq + 1, FinalHash: prev, BytesClient: bytesClient, BytesServer: bytesServer}
	if err := schemas.SignEnd(key, id, &end); err != nil {
		b.Fatal(err)
	}
	payload, _ := json.Marshal(end)
	add(schemas.Frame{Direction: schemas.Server, Kind: schemas.KindSessionEnd, Payload: payload, End: &end})
	flushFrames(ctx, b, store, &batch)
	return id
}

func flushFrames(ctx context.Context, b *testing.B, store clickhouse.Store, batch *[]schemas.Frame) {
	if err := store.Insert(ctx, &clickhouse.Batch{Frames: *batch}); err != nil {
		b.Fatal(err)
	}
	*batch = (*batch)[:0]
}
