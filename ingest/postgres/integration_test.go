package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgproto3/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/tapline/tapline/auth/devissuer"
	"github.com/tapline/tapline/integration/testenv"
	"github.com/tapline/tapline/schemas"
)

func psql(t *testing.T, g *gw, token, app string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(g.pgTool("psql"), append([]string{"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", g.host, "-p", g.port, "-U", "agent", "-d", "app"}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGSSLMODE=require", "PGAPPNAME="+app, "PGCONNECT_TIMEOUT=20")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPsqlOverTLSRecordsAVerifiableSession(t *testing.T) {
	g := startGateway(t, gwOpts{})
	out, err := psql(t, g, g.token("alice", "dba"), "psql-basic",
		"-c", "select current_user", "-c", "select 'tapline-' || 21*2", "-c", "show application_name")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	// The target sees the gateway's user; the agent's application_name passes through.
	if want := g.pg.GWUser + "\ntapline-42\npsql-basic\n"; out != want {
		t.Fatalf("psql output %q, want %q", out, want)
	}
	frames := g.recordedSession(t, byApp("psql-basic"))
	g.verifySession(t, frames)
	start := frames[0]
	if start.Kind != schemas.KindSessionStart || start.Start.Subject != "alice" || start.Start.Target != "app" ||
		!slices.Equal(start.Start.Groups, []string{"dba"}) || start.Start.TokenID == "" {
		t.Fatalf("session.start %+v", start.Start)
	}
	client := kinds(frames, schemas.Client)
	if !slices.Equal(client, []string{"StartupMessage", "Query", "Query", "Query", "Terminate"}) {
		t.Fatalf("client frames %v", client)
	}
	if !bytes.Contains(payloads(frames, schemas.Client), []byte("select 'tapline-' || 21*2")) {
		t.Fatal("query text not in the recorded client frames")
	}
	if bytes.Contains(payloads(frames, schemas.Client), []byte(g.token("alice", "dba")[:20])) {
		t.Fatal("the token was recorded")
	}
	if frames[len(frames)-1].End.Reason != "client terminated" {
		t.Fatalf("end reason %q", frames[len(frames)-1].End.Reason)
	}
}

func TestMD5TargetAndGatewayCredentialsHidden(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, g.connString("app_md5", g.token("alice", "dba"), "require", "md5"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var user string
	if err := c.QueryRow(ctx, "select current_user").Scan(&user); err != nil || user != g.pg.MD5User {
		t.Fatalf("current_user %q, %v", user, err)
	}
}

// pgx: prepared statements, a batch and pipeline mode, over plaintext loopback so
// a tee sees the bytes; the recording must equal them byte for byte.
func TestPgxPipelineRecordedByteForByte(t *testing.T) {
	g := startGateway(t, gwOpts{plaintext: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(g.connString("app", g.token("alice", "dba"), "disable", "pgx-pipeline"))
	if err != nil {
		t.Fatal(err)
	}
	var tee *teeConn
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tee = &teeConn{Conn: c}
		return tee, nil
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Prepared statement, executed twice.
	if _, err := c.Prepare(ctx, "add", "select $1::int + $2::int"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 40} {
		var sum int
		if err := c.QueryRow(ctx, "add", n, 2).Scan(&sum); err != nil || sum != n+2 {
			t.Fatalf("add(%d,2) = %d, %v", n, sum, err)
		}
	}
	// A batch: queued queries sent together.
	b := &pgx.Batch{}
	for i := range 10 {
		b.Queue("select $1::text || '-' || $2::int", "row", i)
	}
	br := c.SendBatch(ctx, b)
	for i := range 10 {
		var s string
		if err := br.QueryRow().Scan(&s); err != nil || s != fmt.Sprintf("row-%d", i) {
			t.Fatalf("batch row %d: %q, %v", i, s, err)
		}
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	// Pipeline mode at the protocol level: several Syncs in flight.
	p := c.PgConn().StartPipeline(ctx)
	for i := range 5 {
		p.SendQueryParams("select $1::int * 10", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		res, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		rr := res.(*pgconn.ResultReader).Read()
		if rr.Err != nil || string(rr.Rows[0][0]) != fmt.Sprint(i*10) {
			t.Fatalf("pipeline result %d: %q %v", i, rr.Rows, rr.Err)
		}
		if _, err := p.GetResults(); err != nil { // the Sync's ReadyForQuery
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Messages over the 900 KiB fragment limit both ways: a 1.5 MB parameter in
	// Bind and a 2 MB value in DataRow.
	var n int
	var big string
	if err := c.QueryRow(ctx, "select length($1::text), repeat('y', 2000000)", strings.Repeat("x", 1500000)).Scan(&n, &big); err != nil || n != 1500000 || len(big) != 2000000 {
		t.Fatalf("large values: %d, %d, %v", n, len(big), err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}

	frames := g.recordedSession(t, byApp("pgx-pipeline"))
	g.verifySession(t, frames)
	tee.mu.Lock()
	sent, got := tee.out.Bytes(), tee.in.Bytes()
	tee.mu.Unlock()
	// The agent's PasswordMessage (the token) is not recorded, nor is the password
	// request the gateway sent before the session existed.
	if want := withoutPasswordMessage(t, sent); !bytes.Equal(payloads(frames, schemas.Client), want) {
		t.Fatalf("recorded client bytes (%d) differ from what the client sent (%d, token removed)", len(payloads(frames, schemas.Client)), len(want))
	}
	if want := got[9:]; !bytes.Equal(payloads(frames, schemas.Server), want) {
		t.Fatalf("recorded server bytes (%d) differ from what the client received (%d)", len(payloads(frames, schemas.Server)), len(want))
	}
	fragmented := map[schemas.Direction]bool{}
	for _, f := range frames {
		if f.Fragment > 0 {
			fragmented[f.Direction] = true
		}
	}
	if !fragmented[schemas.Client] || !fragmented[schemas.Server] {
		t.Fatalf("no fragmented frames (client %v, server %v)", fragmented[schemas.Client], fragmented[schemas.Server])
	}
	for _, k := range []string{"Parse", "Bind", "Describe", "Execute", "Sync", "Terminate"} {
		if !slices.Contains(kinds(frames, schemas.Client), k) {
			t.Errorf("no %s frame", k)
		}
	}
	// The queued queries were sent in one write and recorded as a batch: one
	// call, so consecutive frames with one timestamp.
	if run := longestClientBatch(frames); run < 10 {
		t.Errorf("longest run of client frames recorded together: %d, want the pgx batch (10 queries) in one", run)
	}
}

// longestClientBatch returns the longest run of consecutive CLIENT frames with
// the same ts (one ClientBatch call).
func longestClientBatch(frames []schemas.Frame) int {
	best, run := 0, 0
	for i, f := range frames {
		switch {
		case f.Direction != schemas.Client:
			run = 0
			continue
		case run > 0 && f.TS.Equal(frames[i-1].TS):
			run++
		default:
			run = 1
		}
		best = max(best, run)
	}
	return best
}

// withoutPasswordMessage drops the first 'p' message after the startup packet.
func withoutPasswordMessage(t *testing.T, sent []byte) []byte {
	t.Helper()
	startLen := int(binary.BigEndian.Uint32(sent))
	rest := sent[startLen:]
	if rest[0] != 'p' {
		t.Fatalf("second client message is %q, want a PasswordMessage", rest[0])
	}
	pLen := 1 + int(binary.BigEndian.Uint32(rest[1:]))
	return append(append([]byte{}, sent[:startLen]...), rest[pLen:]...)
}

// rowSource generates COPY text rows, up to left bytes, without holding them;
// each Read fills the buffer, so pgx sends 64 KiB CopyData messages.
type rowSource struct {
	left, row int
	buf       []byte
}

func (r *rowSource) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			line := fmt.Sprintf("%d\t%s\n", r.row+1, strings.Repeat(fmt.Sprintf("%08x", (r.row+1)*2654435761), 120))
			if len(line) > r.left {
				break
			}
			r.row++
			r.left -= len(line)
			r.buf = []byte(line)
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func TestCopy50MBInAndOut(t *testing.T) {
	g := startGateway(t, gwOpts{maxBuffered: 8 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := g.connect(t, "copy")
	table := "copy_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := c.Exec(ctx, "create table "+table+" (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = g.admin(t).Exec(context.Background(), "drop table if exists "+table) })

	in := sha256.New()
	src := &rowSource{left: 50 << 20}
	peak := heapPeak(t)
	started := time.Now()
	tag, err := c.PgConn().CopyFrom(ctx, io.TeeReader(src, in), "copy "+table+" from stdin")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("COPY IN of 50 MB: %s", time.Since(started))
	started = time.Now()
	out := sha256.New()
	tag2, err := c.PgConn().CopyTo(ctx, out, "copy "+table+" to stdout")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("COPY OUT of 50 MB: %s", time.Since(started))
	if tag.RowsAffected() != tag2.RowsAffected() || tag.RowsAffected() < 30000 {
		t.Fatalf("copied in %d rows, out %d", tag.RowsAffected(), tag2.RowsAffected())
	}
	if !bytes.Equal(in.Sum(nil), out.Sum(nil)) {
		t.Fatal("COPY OUT returned different bytes than COPY IN sent")
	}
	// Gateway, recorder and client share this process: together they must stay
	// far below the 50 MB that went through each way.
	if grown := peak(); grown > 40<<20 {
		t.Fatalf("heap grew by %d MiB while copying 50 MB", grown>>20)
	}
	c.Close(ctx)
	frames := g.recordedSession(t, byApp("copy"))
	g.verifySession(t, frames)
	var copyIn, copyOut int
	for _, f := range frames {
		if f.Kind == "CopyData" && f.Direction == schemas.Client {
			copyIn += len(f.Payload) - 5
		}
		if f.Kind == "CopyData" && f.Direction == schemas.Server {
			copyOut += len(f.Payload) - 5
		}
	}
	if copyIn != 50<<20-src.left && copyIn < 50<<20-1024 || copyOut != copyIn {
		t.Fatalf("recorded CopyData bytes in %d, out %d", copyIn, copyOut)
	}
}

// heapPeak samples the heap until the returned func is called, which reports the
// largest growth over the starting point.
func heapPeak(t *testing.T) func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		t.Logf("heap in use: %d MiB at start, peak %d MiB", base>>20, peak>>20)
		return peak - base
	}
}

func TestPgbenchThroughGateway(t *testing.T) {
	g := startGateway(t, gwOpts{})
	env := append(os.Environ(), "PGPASSWORD="+g.token("bench", "dba"), "PGSSLMODE=require", "PGCONNECT_TIMEOUT=20")
	common := []string{"-h", g.host, "-p", g.port, "-U", "agent"}
	// Server-side data generation (G) keeps the load phase quick; the schema is
	// pgbench's own, in a schema of its own so parallel runs do not collide.
	initCmd := exec.Command(g.pgTool("pgbench"), append([]string{"-i", "-I", "dtGvp", "-s", "1", "--quiet"}, append(common, "app")...)...)
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	run := exec.Command(g.pgTool("pgbench"), append([]string{"-T", "5", "-c", "4", "-j", "2", "-n"}, append(common, "app")...)...)
	run.Env = env
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -T 5: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "number of failed transactions: 0") || !strings.Contains(string(out), "tps = ") {
		t.Fatalf("pgbench output:\n%s", out)
	}
	t.Logf("pgbench through the gateway (strict):\n%s", out)
}

// A long query cancelled by the client ends quickly, on the server too.
func TestCancelReachesTheServer(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx := context.Background()
	admin := g.admin(t)

	t.Run("pgx", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(g.connString("app", g.token("alice", "dba"), "require", "cancel-pgx"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 10 * time.Second}
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		started := time.Now()
		_, err = c.Exec(qctx, "select pg_sleep(30) /* cancel-pgx */")
		if took := time.Since(started); took > 5*time.Second {
			t.Fatalf("cancelled query returned after %s", took)
		}
		if code := pgErrCode(err); code != "57014" {
			t.Fatalf("error %v (SQLSTATE %q), want 57014 query_canceled", err, code)
		}
		// The connection is still usable: the cancel hit the query, not the session.
		var one int
		if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		assertNotRunning(t, admin, "cancel-pgx")
	})

	t.Run("psql", func(t *testing.T) {
		cmd := exec.Command(g.pgTool("psql"), "-X", "-h", g.host, "-p", g.port, "-U", "agent", "-d", "app", "-c", "select pg_sleep(30) /* cancel-psql */")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+g.token("alice", "dba"), "PGSSLMODE=require", "PGAPPNAME=cancel-psql")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, admin, "cancel-psql")
		started := time.Now()
		_ = cmd.Process.Signal(syscall.SIGINT) // psql sends a CancelRequest
		_ = cmd.Wait()
		if took := time.Since(started); took > 5*time.Second {
			t.Fatalf("psql returned %s after SIGINT", took)
		}
		if !strings.Contains(out.String(), "canceling statement due to user request") {
			t.Fatalf("psql output: %s", out.String())
		}
		assertNotRunning(t, admin, "cancel-psql")
		frames := g.recordedSession(t, byApp("cancel-psql"))
		g.verifySession(t, frames)
		if !slices.Contains(kinds(frames, schemas.Client), "CancelRequest") {
			t.Fatalf("cancel not recorded: %v", kinds(frames, schemas.Client))
		}
	})
}

func waitRunning(t *testing.T, admin *pgx.Conn, marker string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if runningCount(t, admin, marker) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("query %s never started on the server", marker)
}

func assertNotRunning(t *testing.T, admin *pgx.Conn, marker string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runningCount(t, admin, marker) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("query %s still running on the server after the cancel", marker)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runningCount(t *testing.T, admin *pgx.Conn, marker string) int {
	t.Helper()
	var n int
	err := admin.QueryRow(context.Background(),
		"select count(*) from pg_stat_activity where state = 'active' and query like '%' || $1 || '%' and pid <> pg_backend_pid()", marker).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDenialsAnsweredAndRecorded(t *testing.T) {
	g := startGateway(t, gwOpts{clockSkew: "1s"})
	other, err := devissuer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := g.token("alice", "dba")
	seg := strings.Split(good, ".")
	otherSig := strings.Split(g.token("mallory", "dba"), ".")[2]
	foreign, _ := other.Mint("alice", []string{"dba"}, time.Hour)
	wrongAud, _ := g.iss.Mint("alice", []string{"dba"}, time.Hour, devissuer.WithAudience("someone-else"))
	expired, _ := g.iss.Mint("alice", []string{"dba"}, time.Second)
	time.Sleep(2100 * time.Millisecond)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + seg[1] + "."

	cases := []struct {
		app, db, token, code, msg string
	}{
		{"deny-group", "app", g.token("bob", "web"), "28000", "requires membership in one of [dba]"},
		{"deny-target", "payroll", good, "28000", `unknown target "payroll"`},
		{"deny-expired", "app", expired, "28P01", "token expired"},
		{"deny-audience", "app", wrongAud, "28P01", "audience"},
		{"deny-issuer", "app", foreign, "28P01", "invalid token"},
		{"deny-signature", "app", seg[0] + "." + seg[1] + "." + otherSig, "28P01", "signature"},
		{"deny-alg-none", "app", none, "28P01", `"none" not accepted`},
		{"deny-garbage", "app", "garbage", "28P01", "malformed token"},
	}
	for _, tc := range cases {
		t.Run(tc.app, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, g.connString(tc.db, tc.token, "require", tc.app))
			if err == nil {
				c.Close(ctx)
				t.Fatal("connection accepted")
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(pe.Message, tc.msg) {
				t.Fatalf("got %v, want SQLSTATE %s mentioning %q", err, tc.code, tc.msg)
			}
		})
	}
	all := g.readSessions(t, func(m map[string][]schemas.Frame) bool { return len(m) >= len(cases) })
	denied := map[string]schemas.Frame{}
	for _, fs := range all {
		if len(fs) != 2 || fs[0].Kind != schemas.KindSessionDenied {
			t.Fatalf("unexpected session: %d frames, first %s", len(fs), fs[0].Kind)
		}
		g.verifySession(t, fs)
		denied[fs[0].Start.Params["application_name"]] = fs[0]
	}
	for _, tc := range cases {
		f, ok := denied[tc.app]
		if !ok || !strings.Contains(f.Denial, tc.msg) {
			t.Errorf("%s: denial recorded as %q", tc.app, f.Denial)
		}
	}
	if f := denied["deny-group"]; f.Start.Subject != "bob" || f.Start.Target != "app" {
		t.Errorf("denied identity not recorded: %+v", f.Start)
	}
	if strings.Contains(fmt.Sprint(denied), good) {
		t.Error("a token was recorded")
	}
}

// A client that violates the framing after login gets 08P01 (54000 for a message
// over the size limit) and nothing it sent in that message reaches Postgres.
func TestHostileClientAgainstRealTarget(t *testing.T) {
	g := startGateway(t, gwOpts{plaintext: true})
	marker := "hostile-" + uuid.NewString()
	for _, tc := range []struct {
		name, code, want, reason string
		raw                      []byte
	}{
		{"oversized", "54000", "exceeds the limit", "client message too large", binary.BigEndian.AppendUint32([]byte{'Q'}, 1<<30)},
		{"negative", "08P01", "invalid length", "protocol violation", []byte{'Q', 0x80, 0, 0, 0}},
		{"unknown type", "08P01", "unexpected message type", "protocol violation", []byte{'!', 0, 0, 0, 4}},
		{"truncated", "08P01", "truncated", "protocol violation", append(binary.BigEndian.AppendUint32([]byte{'Q'}, 100), "select '"+marker+"'"...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawLogin(t, g, "hostile-"+tc.name)
			if _, err := conn.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated" {
				conn.(*net.TCPConn).CloseWrite()
			}
			e := readError(t, conn)
			if e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %s %q, want %s mentioning %q", e.Code, e.Message, tc.code, tc.want)
			}
			frames := g.recordedSession(t, byApp("hostile-"+tc.name))
			g.verifySession(t, frames)
			if r := frames[len(frames)-1].End.Reason; !strings.Contains(r, tc.reason) {
				t.Fatalf("end reason %q", r)
			}
		})
	}
	assertNotInPostgresLog(t, g, marker)
}

// rawLogin logs in with the protocol by hand and reads up to ReadyForQuery.
func rawLogin(t *testing.T, g *gw, app string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(pgproto3.NewChunkReader(conn), conn)
	_ = fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "agent", "database": "app", "application_name": app}})
	if _, err := fe.Receive(); err != nil {
		t.Fatal(err)
	}
	_ = fe.Send(&pgproto3.PasswordMessage{Password: g.token("alice", "dba")})
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return conn
		}
	}
}

func readError(t *testing.T, conn net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	fe := pgproto3.NewFrontend(pgproto3.NewChunkReader(conn), conn)
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("no ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
}

// assertNotInPostgresLog proves on the server side that a statement never
// arrived: the test cluster logs every statement (log_statement=all).
func assertNotInPostgresLog(t *testing.T, g *gw, marker string) {
	t.Helper()
	// A statement that did arrive is logged at once; give the log a moment anyway.
	time.Sleep(200 * time.Millisecond)
	b, err := os.ReadFile(g.pg.Log)
	if err != nil {
		t.Fatalf("read the Postgres log: %v", err)
	}
	if bytes.Contains(b, []byte(marker)) {
		t.Fatalf("%q reached Postgres (found in %s)", marker, g.pg.Log)
	}
}

// Kafka stops: a statement sent in strict mode never reaches Postgres, the agent
// is told why, and new connections are refused until Kafka is back.
func TestKafkaDownFailsClosed(t *testing.T) {
	k := testenv.PrivateKafka(t)
	g := startGateway(t, gwOpts{brokers: k.Brokers(), produceTimeout: "3s"})
	ctx := context.Background()
	c := g.connect(t, "kafka-down")
	table := "kdown_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := c.Exec(ctx, "create table "+table+" (v text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = g.admin(t).Exec(context.Background(), "drop table if exists "+table) })
	if _, err := c.Exec(ctx, "insert into "+table+" values ('before')"); err != nil {
		t.Fatal(err)
	}

	k.Stop()
	marker := "while-kafka-down-" + uuid.NewString()
	started := time.Now()
	_, err := c.Exec(ctx, "insert into "+table+" values ('"+marker+"')")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "recording unavailable (Kafka)") {
		t.Fatalf("statement while Kafka is down: %v", err)
	}
	t.Logf("statement refused after %s: %s", time.Since(started).Round(time.Millisecond), pe.Message)
	assertNotInPostgresLog(t, g, marker)
	// Read the rows without naming the marker, which would put it in the log.
	rows, err := g.admin(t).Query(ctx, "select v from "+table)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(vals, []string{"before"}) {
		t.Fatalf("table holds %v (%v), want only the row inserted before Kafka stopped", vals, err)
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = pgx.Connect(cctx, g.connString("app", g.token("alice", "dba"), "require", "kafka-down-new"))
	if !errors.As(err, &pe) || pe.Code != "08004" || !strings.Contains(pe.Message, "recording unavailable (Kafka)") {
		t.Fatalf("new connection while Kafka is down: %v", err)
	}

	k.Start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c2, err := pgx.Connect(cctx, g.connString("app", g.token("alice", "dba"), "require", "kafka-back"))
		if err == nil {
			c2.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection 60s after Kafka came back: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The interrupted session still gets its signed end once Kafka is back.
	frames := g.recordedSession(t, byApp("kafka-down"))
	g.verifySession(t, frames)
	if r := frames[len(frames)-1].End.Reason; !strings.Contains(r, "recording") {
		t.Fatalf("end reason %q", r)
	}
	if bytes.Contains(payloads(frames, schemas.Client), []byte(marker)) {
		// Recorded but unacknowledged is allowed; forwarded is not (checked above).
		t.Log("the refused statement's frame reached Kafka after all")
	}
}

// Shutdown ends live sessions: the agent is told, the recording is ended with
// reason "gateway shutdown" and signed.
func TestGracefulShutdownEndsSessions(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx := context.Background()
	c := g.connect(t, "shutdown")
	if _, err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	metrics := g.scrapeMetrics(t)
	for _, want := range []string{`tapline_postgres_connections_total{result="session"} 1`, "tapline_postgres_sessions_active 1", "tapline_recorder_"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// A statement still running when the gateway stops is cancelled on the server.
	admin := g.admin(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "select pg_sleep(30) /* shutdown-running */")
		errc <- err
	}()
	waitRunning(t, admin, "shutdown-running")
	g.stop()
	if code := pgErrCode(<-errc); code != "57P01" {
		t.Fatalf("statement running at shutdown: SQLSTATE %q, want 57P01", code)
	}
	assertNotRunning(t, admin, "shutdown-running")
	frames := g.recordedSession(t, byApp("shutdown"))
	g.verifySession(t, frames)
	if r := frames[len(frames)-1].End.Reason; r != "gateway shutdown" {
		t.Fatalf("end reason %q", r)
	}
}

// LISTEN/NOTIFY: asynchronous NotificationResponse messages reach an idle agent.
func TestNotificationsRelayed(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listener := g.connect(t, "listen")
	if _, err := listener.Exec(ctx, "listen tapline_events"); err != nil {
		t.Fatal(err)
	}
	notifier := g.connect(t, "notify")
	if _, err := notifier.Exec(ctx, "select pg_notify('tapline_events', 'deploy finished')"); err != nil {
		t.Fatal(err)
	}
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "tapline_events" || n.Payload != "deploy finished" {
		t.Fatalf("notification %+v", n)
	}
	listener.Close(ctx)
	frames := g.recordedSession(t, byApp("listen"))
	g.verifySession(t, frames)
	if !slices.Contains(kinds(frames, schemas.Server), "NotificationResponse") {
		t.Fatalf("no NotificationResponse frame: %v", kinds(frames, schemas.Server))
	}
}

// verify-full against a CA that did not sign the target's certificate: the
// gateway refuses to log in, and says so.
func TestTargetCertificateVerified(t *testing.T) {
	g := startGateway(t, gwOpts{wrongCA: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := pgx.Connect(ctx, g.connString("app", g.token("alice", "dba"), "require", "bad-ca"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08001" || !strings.Contains(pe.Message, "certificate") {
		t.Fatalf("got %v, want 08001 about the target's certificate", err)
	}
	frames := g.recordedSession(t, byApp("bad-ca"))
	g.verifySession(t, frames)
	if r := frames[len(frames)-1].End.Reason; !strings.HasPrefix(r, "target login failed") {
		t.Fatalf("end reason %q", r)
	}
}

// PostgreSQL 17 clients can skip the SSLRequest (sslnegotiation=direct).
func TestDirectTLSNegotiation(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.connString("app", g.token("alice", "dba"), "require", "direct-tls")+" sslnegotiation=direct")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var ssl bool
	if err := c.QueryRow(ctx, "select 1 = 1").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("query over direct TLS: %v", err)
	}
}

// A session through the real gateway ends when its token expires: a statement
// still running is cut off with the gateway's message, and the recording (read
// back from Kafka and verified) ends with reason token_expired.
func TestSessionEndsAtTokenExpiryThroughGateway(t *testing.T) {
	g := startGateway(t, gwOpts{clockSkew: "1s"})
	tok, err := g.iss.Mint("alice", []string{"dba"}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.connString("app", tok, "require", "expiring"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "select pg_sleep(45)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || !strings.Contains(pe.Message, "token expired") {
		t.Fatalf("statement across the token's expiry: %v, want 57P01 about the token", err)
	}
	frames := g.recordedSession(t, byApp("expiring"))
	g.verifySession(t, frames)
	if r := frames[len(frames)-1].End.Reason; r != "token_expired" {
		t.Fatalf("end reason %q, want token_expired", r)
	}
}

// A driver terminates a session by the pid the server announced in
// BackendKeyData, as pools do to drop a broken connection: through the gateway
// that pid is the real backend's, the agent gets PostgreSQL's FATAL and the
// disconnect, and the recording ends with that reason.
func TestTerminateBackendByAnnouncedPid(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ctx := context.Background()
	admin := g.admin(t)
	const wantReason = "target ended the session: FATAL 57P01: terminating connection due to administrator command"

	t.Run("pgx", func(t *testing.T) {
		c := g.connect(t, "terminate-pgx")
		announced := c.PgConn().PID()
		var backend uint32
		if err := c.QueryRow(ctx, "select pg_backend_pid()").Scan(&backend); err != nil {
			t.Fatal(err)
		}
		if announced != backend {
			t.Fatalf("BackendKeyData announced pid %d, the backend is %d", announced, backend)
		}
		running := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, "select pg_sleep(60) /* terminate-pgx */")
			running <- err
		}()
		waitRunning(t, admin, "terminate-pgx")
		var ok bool
		if err := admin.QueryRow(ctx, "select pg_terminate_backend($1)", int32(announced)).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v, %v", announced, ok, err)
		}
		select {
		case err := <-running:
			if code := pgErrCode(err); code != "57P01" {
				t.Fatalf("error %v (SQLSTATE %q), want 57P01 admin_shutdown", err, code)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the terminated statement did not return")
		}
		if !c.IsClosed() {
			t.Fatal("connection still open after the target's FATAL")
		}
		frames := g.recordedSession(t, byApp("terminate-pgx"))
		g.verifySession(t, frames)
		if got := frames[len(frames)-1].End.Reason; got != wantReason {
			t.Fatalf("end reason %q, want %q", got, wantReason)
		}
	})

	t.Run("psql", func(t *testing.T) {
		cmd := exec.Command(g.pgTool("psql"), "-X", "-h", g.host, "-p", g.port, "-U", "agent", "-d", "app", "-c", "select pg_sleep(60) /* terminate-psql */")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+g.token("alice", "dba"), "PGSSLMODE=require", "PGAPPNAME=terminate-psql", "PGCONNECT_TIMEOUT=20")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, admin, "terminate-psql")
		var n int
		err := admin.QueryRow(ctx, "select count(pg_terminate_backend(pid)) from pg_stat_activity where query like '%terminate-psql%' and pid <> pg_backend_pid()").Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("terminated %d backends: %v", n, err)
		}
		err = cmd.Wait()
		if err == nil {
			t.Fatalf("psql succeeded after its backend was terminated:\n%s", out.String())
		}
		for _, want := range []string{"FATAL:  terminating connection due to administrator command", "connection to server was lost"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("psql output lacks %q:\n%s", want, out.String())
			}
		}
		frames := g.recordedSession(t, byApp("terminate-psql"))
		g.verifySession(t, frames)
		if got := frames[len(frames)-1].End.Reason; got != wantReason {
			t.Fatalf("end reason %q, want %q", got, wantReason)
		}
	})
}
