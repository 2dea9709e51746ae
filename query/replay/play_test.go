package replay

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/sessiontest"
)

type sleeps []time.Duration

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	*s = append(*s, d)
	return nil
}

func (s sleeps) total() time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

func TestPlayAsciicastKeepsTimingAndOutput(t *testing.T) {
	b, want := terminalSession()
	var cast bytes.Buffer
	if err := Write(&cast, schemas.SSH, FormatAsciicast, sessiontest.Seq(b.Frames), Options{}, nil); err != nil {
		t.Fatal(err)
	}
	var slept sleeps
	var out bytes.Buffer
	p := &Player{Speed: 2, Sleep: slept.sleep}
	if err := p.Play(context.Background(), schemas.SSH, &cast, &out); err != nil {
		t.Fatal(err)
	}
	// Output plus one resize sequence for the window change.
	if got := strings.Replace(out.String(), "\x1b[8;30;100t", "", 1); got != string(want) {
		t.Errorf("played output differs:\n got %q\nwant %q", got, want)
	}
	// 1.614s of recording at double speed.
	if tot := slept.total(); tot < 800*time.Millisecond || tot > 810*time.Millisecond {
		t.Errorf("slept %v in total", tot)
	}

	slept = nil
	cast.Reset()
	Write(&cast, schemas.SSH, FormatAsciicast, sessiontest.Seq(b.Frames), Options{}, nil)
	p = &Player{IdleLimit: 200 * time.Millisecond, Sleep: slept.sleep}
	p.Play(context.Background(), schemas.SSH, &cast, &out)
	for _, d := range slept {
		if d > 200*time.Millisecond {
			t.Errorf("pause of %v past the idle limit", d)
		}
	}
}

func TestPlayPostgresPausesBetweenStatements(t *testing.T) {
	s := newPG().c(&pgproto3.Query{String: "SELECT 1"}).s(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{})
	s.Step(3 * time.Second)
	s.c(&pgproto3.Query{String: "SELECT 2"}).s(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{})
	var events bytes.Buffer
	if err := Write(&events, schemas.Postgres, FormatJSON, sessiontest.Seq(s.Frames), Options{}, nil); err != nil {
		t.Fatal(err)
	}
	var slept sleeps
	var out bytes.Buffer
	p := &Player{Sleep: slept.sleep}
	if err := p.Play(context.Background(), schemas.Postgres, &events, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "SELECT 1\n") || !strings.Contains(out.String(), "SELECT 2\n") {
		t.Errorf("played transcript:\n%s", out.String())
	}
	if len(slept) != 2 || slept[1] < 3*time.Second {
		t.Errorf("pauses %v; want the 3s gap before the second statement", slept)
	}
}
