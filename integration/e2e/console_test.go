//go:build chdb

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tapline/tapline/schemas"
)

// browserWait bounds every wait on the page: generous, since CI is a loaded 2-core box.
const browserWait = 60 * time.Second

// chromiumPath finds Debian's chromium (integration/services.sh up browser installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; run integration/services.sh up browser")
	}
	t.Skip("chromium is not installed; run integration/services.sh up browser")
	return ""
}

// page is one headless Chromium tab, fresh profile, on the test's console.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string // screenshots
	n    int
}

func newPage(t *testing.T, base string) *page {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancel)
	dir := os.Getenv("TAPLINE_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	} else {
		dir = filepath.Join(dir, t.Name())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, ctx: ctx, base: base, dir: dir}
	// Runs before the browser closes (cleanups run last-in first-out).
	t.Cleanup(func() {
		if t.Failed() {
			p.t = t // the subtests have ended; log to the test that owns the browser
			p.shot("failure")
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			defer cancel()
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Logf("the page at failure: %s\n%s", loc, body)
		}
	})
	// The first call starts the browser, which lives as long as its context: no timeout here.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return p
}

// run runs steps, failing the test with what it was doing.
func (p *page) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action and returns its value.
func get[T any](p *page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS waits until the expression is true.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	get(p, what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(browserWait), chromedp.WithPollingInterval(100*time.Millisecond)))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return get(p, "read "+sel, chromedp.Text(css(sel)))
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func (p *page) shot(name string) {
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p.n++
	path := filepath.Join(p.dir, fmt.Sprintf("%02d-%s.png", p.n, name))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
	}
}

// login goes through the dev issuer's page as sub in groups.
func (p *page) login(sub, groups string) {
	p.t.Helper()
	p.run("open the console", chromedp.Navigate(p.base+"/"), chromedp.WaitVisible(css("#login")))
	p.shot("login")
	p.run("reach the dev issuer's page", chromedp.Click(css("#login")), chromedp.WaitVisible(css("#subject")))
	p.run("fill the login form",
		chromedp.SetValue(css("#subject"), sub), chromedp.SetValue(css("#groups"), groups))
	p.shot("issuer-login")
	p.run("log in", chromedp.Click(css("#submit")), chromedp.WaitVisible(css("#filters")))
	if who := p.text("#who"); !strings.Contains(who, sub) {
		p.t.Fatalf("logged in as %q, want %s", who, sub)
	}
}

func (p *page) open(path, ready string) {
	p.t.Helper()
	p.run("open "+path, chromedp.Navigate(p.base+path), chromedp.WaitVisible(ready))
}

func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	h := pipeline(t)
	sub := "casey-" + randHex(3)
	token := h.token(t, sub, pgGroup, sshGroup, httpGroup)
	secret := randHex(4)

	// Recorded through the real clients: psql (with a value the processors mask) and
	// ssh with a terminal, whose output is computed so the command text differs.
	run := h.psql(t, token, sub, "SELECT 'carol@example.com' AS email, 7 AS n", "SELECT 'console "+secret+"' AS tampered")
	if run.err != nil {
		t.Fatalf("psql: %v %s", run.err, run.stderr)
	}
	out, code := h.sshRun(t, token, []string{"-tt"}, "echo console-$((6*7))-"+secret)
	if code != 0 || !strings.Contains(out, "console-42-"+secret) {
		t.Fatalf("ssh: exit %d, %q", code, out)
	}
	run = h.psql(t, token, sub, "SELECT 'untouched' AS v")
	if run.err != nil {
		t.Fatalf("psql: %v %s", run.err, run.stderr)
	}
	// An HTTP exchange whose JSON body holds a password the processors mask.
	req, _ := http.NewRequest("POST", "https://"+h.httpAddr+"/"+httpTarget+"/v1/login",
		strings.NewReader(`{"user":"casey","password":"pw-`+secret+`"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	cl := h.httpClient(t)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cl.CloseIdleConnections() // the session ends with the agent's connection
	sessions := h.waitSessions(t, sub, 4)
	var pgID, sshID, tamperedID, httpID string
	for _, s := range sessions {
		switch {
		case s.Protocol == string(schemas.SSH):
			sshID = s.SessionID
		case s.Protocol == string(schemas.HTTP):
			httpID = s.SessionID
		case s.Commands == 2:
			pgID = s.SessionID
		default:
			tamperedID = s.SessionID
		}
	}
	if pgID == "" || sshID == "" || tamperedID == "" || httpID == "" {
		t.Fatalf("sessions %+v: want a 2-statement Postgres one, an SSH one, a 1-statement Postgres one and an HTTP one", sessions)
	}
	// Alter a stored payload of the third session, as someone with write access to
	// the store might.
	q := h.findFrame(t, tamperedID, schemas.Client, "Query", "untouched")
	h.setFrame(t, tamperedID, q.Seq, map[string][]byte{"payload": bytes.Replace(q.Payload, []byte("untouched"), []byte("rewritten"), 1)})

	p := newPage(t, h.api.URL)
	p.login(sub, pgGroup+","+sshGroup)

	t.Run("sessions list", func(t *testing.T) {
		p.t = t
		p.waitJS("the four sessions listed", `document.querySelectorAll('#sessions tr').length === 4`)
		for _, id := range []string{pgID, sshID, tamperedID, httpID} {
			p.waitJS("session "+id+" listed", fmt.Sprintf(`!!document.querySelector('#sessions tr[data-id=%q]')`, id))
		}
		p.shot("sessions")
		p.run("filter by protocol", chromedp.SetValue(css(`select[name=protocol]`), "ssh"),
			chromedp.Click(css(`#filters button[type=submit]`)))
		p.waitJS("only the SSH session", fmt.Sprintf(`(() => { const r = document.querySelectorAll('#sessions tr');
			return r.length === 1 && r[0].dataset.id === %q })()`, sshID))
		p.shot("sessions-filtered")
	})

	t.Run("keyboard navigation", func(t *testing.T) {
		p.t = t
		p.open("/", "#sessions tr")
		p.waitJS("the list loaded", `document.querySelectorAll('#sessions tr').length === 4`)
		p.run("j j selects the second session", chromedp.KeyEvent("j"), chromedp.KeyEvent("j"))
		second := get(p, "the selected row", chromedp.AttributeValue(css(`#sessions tr.selected`), "data-id")).Value
		p.run("Enter opens it", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(css("#session-meta")))
		loc := get(p, "location", chromedp.Location())
		if !strings.HasSuffix(loc, "/sessions/"+second) {
			t.Errorf("Enter on the second row opened %s, want /sessions/%s", loc, second)
		}
		p.run("g goes back to the list", chromedp.KeyEvent("g"), chromedp.WaitVisible(css("#sessions tr")))
		p.run("/ focuses the first filter", chromedp.KeyEvent("/"))
		p.waitJS("a filter focused", `document.activeElement && document.activeElement.name === 'subject'`)
	})

	t.Run("postgres transcript is masked", func(t *testing.T) {
		p.t = t
		p.open("/sessions/"+pgID, "#transcript")
		p.waitJS("transcript complete", `document.querySelector('#transcript').dataset.complete === 'true'`)
		p.waitJS("result table with the email column", `[...document.querySelectorAll('#transcript table.result th')].some(th => th.textContent === 'email')`)
		tr := p.text("#transcript")
		if !strings.Contains(tr, "[masked:email]") || strings.Contains(tr, "carol@example.com") {
			t.Errorf("transcript shows %q; want the masked value, never the address", tr)
		}
		p.waitJS("verified badge", `document.querySelector('#verify').dataset.ok === 'true'`)
		p.shot("postgres")
	})

	t.Run("ssh terminal plays to the end", func(t *testing.T) {
		p.t = t
		p.open("/sessions/"+sshID, "#player")
		p.waitJS("player ready", `['ready','paused'].includes(document.querySelector('#player').dataset.state)`)
		get(p, "play fast", chromedp.Evaluate[bool](`(() => { const s = document.querySelector('#speed'); s.value = '16';
			s.dispatchEvent(new Event('change')); return true })()`))
		p.waitJS("played to the end", `document.querySelector('#player').dataset.state === 'ended'`)
		p.waitJS("the output on the terminal", fmt.Sprintf(`document.querySelector('#player').innerText.includes(%q)`, "console-42-"+secret))
		p.shot("ssh")
	})

	t.Run("http exchanges are shown masked", func(t *testing.T) {
		p.t = t
		p.open("/sessions/"+httpID, "#exchanges")
		p.waitJS("exchanges complete", `document.querySelector('#exchanges').dataset.complete === 'true'`)
		ex := p.text("#exchanges")
		if !strings.Contains(ex, "POST /v1/login") || strings.Contains(ex, "pw-"+secret) {
			t.Errorf("exchanges show %q; want the request, never the password", ex)
		}
		p.waitJS("a HAR download", `!!document.querySelector('.downloads a[download$=".har"]')`)
		p.run("the command jumps to its exchange", chromedp.Click(css(`#timeline li button`)))
		p.waitJS("the exchange marked", `(() => { const t = document.querySelector('#exchanges .exchange.target');
			return !!t && t.textContent.startsWith('* exchange 1 ') })()`)
		p.waitJS("verified badge", `document.querySelector('#verify').dataset.ok === 'true'`)
		p.shot("http")
	})

	t.Run("tampered session fails verification with its seq", func(t *testing.T) {
		p.t = t
		p.open("/sessions/"+tamperedID, "#verify")
		want := fmt.Sprintf("verify failed at seq %d", q.Seq)
		p.waitJS("failing badge", fmt.Sprintf(`document.querySelector('#verify').textContent.includes(%q)`, want))
		p.run("open the report", chromedp.Click(css("#verify")), chromedp.WaitVisible(css("#problems")))
		if rep := p.text("#problems"); !strings.Contains(rep, fmt.Sprintf("seq %d:", q.Seq)) {
			t.Errorf("report lists %q, want seq %d", rep, q.Seq)
		}
		p.shot("tampered")
		p.run("close the report", chromedp.Click(css("#verify-report form button")), chromedp.WaitNotVisible(css("#verify-report")))
	})

	t.Run("another user gets the not-found page", func(t *testing.T) {
		p.t = t
		p.run("log out", chromedp.Click(css("#logout")), chromedp.WaitVisible(css("#login")))
		p.login("other-"+randHex(3), pgGroup)
		p.open("/sessions/"+pgID, "#notfound")
		theirs := p.text("main")
		p.shot("not-found")
		p.open("/sessions/01900000-0000-7000-8000-000000000000", "#notfound")
		if missing := p.text("main"); missing != theirs {
			t.Errorf("another user's session shows %q, a missing one %q: they must be the same", theirs, missing)
		}
	})

	t.Run("auditor sees every session and runs SQL", func(t *testing.T) {
		p.t = t
		p.run("log out", chromedp.Click(css("#logout")), chromedp.WaitVisible(css("#login")))
		p.login("audrey-"+randHex(3), auditors)
		p.open("/sessions/"+pgID, "#transcript")
		p.open("/sql", "#sql-text")
		p.run("run a statement", chromedp.SetValue(css("#sql-text"),
			fmt.Sprintf("SELECT session_id, subject FROM sessions FINAL WHERE subject = '%s' ORDER BY started_at", sub)),
			chromedp.Click(css("#sql-run")))
		p.waitJS("four rows", `document.querySelectorAll('#sql-result tbody tr').length === 4`)
		p.waitJS("CSV offered", `!document.querySelector('#sql-csv').disabled`)
		p.shot("sql")
	})
}
