package corpus

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/integration/testenv"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/postgres"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

// pgx against the test Postgres (integration/services.sh) through a
// recording relay that frames each wire message as the gateway does. The replay must
// make sense of what real clients and servers send, not only of synthetic messages.

var clientKinds = map[byte]string{'Q': "Query", 'P': "Parse", 'B': "Bind", 'D': "Describe", 'E': "Execute", 'S': "Sync",
	'C': "Close", 'H': "Flush", 'X': "Terminate", 'p': "PasswordMessage", 'd': "CopyData", 'c': "CopyDone", 'f': "CopyFail", 'F': "FunctionCall"}

var serverKinds = map[byte]string{'R': "Authentication", 'S': "ParameterStatus", 'K': "BackendKeyData", 'Z': "ReadyForQuery",
	'T': "RowDescription", 'D': "DataRow", 'C': "CommandComplete", 'E': "ErrorResponse", 'N': "NoticeResponse",
	'A': "NotificationResponse", '1': "ParseComplete", '2': "BindComplete", '3': "CloseComplete", 'n': "NoData",
	't': "ParameterDescription", 's': "PortalSuspended", 'I': "EmptyQueryResponse", 'G': "CopyInResponse",
	'H': "CopyOutResponse", 'W': "CopyBothResponse"}

// relay records one Postgres connection message by message into a session.
type relay struct {
	mu sync.Mutex
	b  *sessiontest.Builder
}

func (r *relay) record(dir schemas.Direction, kind string, msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.Now = time.Now().UTC()
	if dir == schemas.Client {
		r.b.Client(kind, 0, append([]byte(nil), msg...))
	} else {
		r.b.Server(kind, 0, append([]byte(nil), msg...))
	}
}

// pump copies messages from src to dst, recording each before forwarding it.
func (r *relay) pump(src io.Reader, dst io.Writer, dir schemas.Direction, startup bool) error {
	br := bufio.NewReader(src)
	for {
		hdr := make([]byte, 5)
		kind := "StartupMessage"
		if startup { // the startup message has no type byte
			hdr = hdr[:4]
		}
		if _, err := io.ReadFull(br, hdr); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[len(hdr)-4:])
		msg := make([]byte, len(hdr)+int(n)-4)
		copy(msg, hdr)
		if _, err := io.ReadFull(br, msg[len(hdr):]); err != nil {
			return err
		}
		switch {
		case startup:
			startup = false
		case dir == schemas.Client:
			kind = clientKinds[hdr[0]]
		default:
			kind = serverKinds[hdr[0]]
			if kind == "Authentication" && n == 8 && binary.BigEndian.Uint32(msg[5:]) == 0 {
				kind = "AuthenticationOk"
			}
		}
		r.record(dir, kind, msg)
		if _, err := dst.Write(msg); err != nil {
			return err
		}
	}
}

func TestReplayOfRealPgxTraffic(t *testing.T) {
	pg := testenv.Postgres(t)
	target := pg.Addr()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := &relay{b: sessiontest.New(schemas.Postgres, schemas.SessionStart{Subject: "alice", Target: "app"})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		agent, err := ln.Accept()
		if err != nil {
			return
		}
		defer agent.Close()
		pg, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer pg.Close()
		go rec.pump(pg, agent, schemas.Server, false)
		rec.pump(agent, pg, schemas.Client, true)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The admin DSN, pointed at the relay.
	dsn := strings.Replace(pg.AdminDSN(), "@"+pg.Addr()+"/", "@"+ln.Addr().String()+"/", 1)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	mustExec := func(sql string, args ...any) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec("CREATE TEMP TABLE agents (id int4, name text, seen timestamptz)")
	mustExec("INSERT INTO agents VALUES ($1, $2, $3)", 1, "ann", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	mustExec("INSERT INTO agents VALUES ($1, $2, $3)", 2, "bo", nil)
	for range 2 { // the second run uses pgx's cached statement: no Describe
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM agents WHERE id >= $1", 1).Scan(&n); err != nil || n != 2 {
			t.Fatalf("count: %d %v", n, err)
		}
	}
	rows, _ := conn.Query(ctx, "SELECT id, name, seen FROM agents ORDER BY id")
	rows.Close()
	if _, err := conn.Exec(ctx, "SELEC 1"); err == nil {
		t.Fatal("syntax error not reported")
	}
	conn.Close(ctx)
	<-done

	var sts []*postgres.Statement
	var types []string
	for ev, err := range postgres.Events(sessiontest.Seq(rec.b.Frames), protocol.ReplayOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
		if ev.Type == "note" {
			t.Errorf("note at seq %d: %s", ev.Seq, ev.Message)
		}
		if ev.Type == "statement" {
			sts = append(sts, ev.Statement)
		}
	}
	if !strings.HasPrefix(strings.Join(types, ","), "session.start,startup,authenticated,") {
		t.Errorf("event types %v", types)
	}
	byText := map[string][]*postgres.Statement{}
	for _, st := range sts {
		byText[st.Text] = append(byText[st.Text], st)
	}
	ins := byText["INSERT INTO agents VALUES ($1, $2, $3)"]
	if len(ins) != 2 || pgStrs(ins[0].Params)[0] != "1" || pgStrs(ins[0].Params)[1] != "ann" ||
		!strings.HasPrefix(pgStrs(ins[0].Params)[2], "2026-01-02") || pgStrs(ins[1].Params)[2] != "NULL" || ins[0].Results[0].Tag != "INSERT 0 1" {
		for _, st := range ins {
			t.Errorf("insert %q params %v results %+v", st.Text, pgStrs(st.Params), st.Results)
		}
	}
	counts := byText["SELECT count(*) FROM agents WHERE id >= $1"]
	if len(counts) != 2 {
		t.Fatalf("count statements: %d", len(counts))
	}
	for i, st := range counts {
		r := st.Results[0]
		if len(r.Columns) != 1 || r.Columns[0].Name != "count" || len(r.Rows) != 1 || *r.Rows[0][0] != "2" {
			t.Errorf("count run %d: columns %+v rows %v", i, r.Columns, r.Rows)
		}
	}
	sel := byText["SELECT id, name, seen FROM agents ORDER BY id"]
	if len(sel) != 1 || len(sel[0].Results[0].Rows) != 2 || pgStrs(sel[0].Results[0].Rows[1])[1] != "bo" || pgStrs(sel[0].Results[0].Rows[1])[2] != "NULL" {
		t.Errorf("select: %+v", sel)
	}
	if testing.Verbose() {
		var text strings.Builder
		postgres.WriteText(&text, postgres.Events(sessiontest.Seq(rec.b.Frames), protocol.ReplayOptions{}), nil)
		t.Log("transcript:\n" + text.String())
	}
	bad := byText["SELEC 1"]
	if len(bad) != 1 || bad[0].Error == nil || bad[0].Error.Code != "42601" {
		t.Errorf("syntax error statement: %+v", bad)
	}
}

// pgStrs prints a row or parameter list, NULL for nil.
func pgStrs(p []*string) []string {
	out := make([]string, len(p))
	for i, v := range p {
		out[i] = "NULL"
		if v != nil {
			out[i] = *v
		}
	}
	return out
}
