// tapline console: a page application over the query API. Every read goes through
// /api/v1 with the session cookie, so the API's access rules and trail apply. Text
// from recordings only ever reaches the page as text nodes, never as HTML.

const API = "/api/v1";
const HEADER = { "X-Tapline-Console": "1" };
const main = document.getElementById("main");
let me = null;
let cleanup = [];

// h builds an element: attributes (on* are listeners) and children (strings become text).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// safe shows recorded text as the CLI does (query/textsafe): control characters, C1
// controls and bidirectional overrides become visible escapes, so an agent's text
// cannot hide or reorder what the page shows. Newlines and tabs stay.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
function safe(v) {
  if (v === null || v === undefined) return "";
  return String(v).replace(UNSAFE, (c) => {
    const n = c.charCodeAt(0);
    if (c === "\r") return "\\r";
    if (c === "\x1b") return "\\x1b";
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
  });
}

class HTTPError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const resp = await fetch(API + path, { headers: HEADER, credentials: "same-origin", ...opts });
  if (!resp.ok) {
    let msg = resp.statusText;
    try { msg = (await resp.json()).error.message; } catch { /* not JSON */ }
    throw new HTTPError(resp.status, msg);
  }
  return resp;
}
const getJSON = async (path) => (await api(path)).json();

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function fmtDur(ms) {
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}
function statusBadge(status) {
  if (status === "active") return h("span", { class: "badge live", title: "recording now" }, "● live");
  const cls = status === "ended" ? "ok" : status === "denied" ? "bad" : "warn";
  return h("span", { class: `badge ${cls}` }, status);
}

function setPage(title, nav, ...content) {
  for (const f of cleanup.splice(0)) f();
  document.title = title ? `${title} · tapline` : "tapline";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren(...content);
  main.dataset.page = nav;
}

function navigate(path) {
  history.pushState(null, "", path);
  route();
}

// Links inside the app navigate without a reload.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || a.target || a.hasAttribute("download") || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || u.pathname.startsWith("/api/") || u.pathname.startsWith("/auth/")) return;
  e.preventDefault();
  navigate(u.pathname + u.search);
});
window.addEventListener("popstate", route);

// ---- pages ----

function loginPage() {
  const next = location.pathname + location.search;
  setPage("Log in", "login", h("div", { class: "narrow" },
    h("h1", {}, "tapline"),
    h("p", {}, "Recorded sessions of automated agents. Log in with your identity provider to see yours (auditors see all)."),
    h("p", {}, h("a", { href: `/auth/login?next=${encodeURIComponent(next)}`, id: "login", class: "button" }, "Log in"))));
}

function notFoundPage() {
  setPage("Not found", "notfound", h("div", { class: "notfound", id: "notfound" },
    h("h1", {}, "Not found"),
    h("p", {}, "There is no such session, or it is not one you may see."),
    h("p", {}, h("a", { href: "/" }, "Back to the sessions"))));
}

function errorPage(err) {
  if (err instanceof HTTPError && err.status === 401) return loginPage();
  if (err instanceof HTTPError && err.status === 404) return notFoundPage();
  setPage("Error", "error", h("p", { class: "error", role: "alert" }, String(err.message || err)));
}

// Sessions list: filters in the URL, keyset paging as the list scrolls.
const FILTERS = [
  ["subject", "Subject", "text"], ["target", "Target", "text"],
  ["protocol", "Protocol", ["", "postgres", "ssh", "http", "kubernetes"]],
  ["status", "Status", ["", "active", "ended", "denied", "abandoned"]],
  ["since", "Since", "datetime-local"], ["until", "Until", "datetime-local"], ["command", "Command text", "text"],
];

function sessionsPage() {
  const params = new URLSearchParams(location.search);
  const form = h("form", { class: "filters", role: "search", id: "filters" },
    FILTERS.map(([name, label, type]) => {
      let input;
      if (Array.isArray(type)) {
        input = h("select", { name }, type.map((v) => h("option", { value: v, selected: params.get(name) === v }, v || "any")));
      } else {
        input = h("input", { name, type, value: params.get(name) || "" });
      }
      return h("label", {}, label, input);
    }),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    navigate("/?" + q.toString());
  });
  const tbody = h("tbody", { id: "sessions" });
  const more = h("button", { type: "button", id: "more", hidden: true }, "Load more");
  const status = h("p", { class: "muted", "aria-live": "polite", id: "list-status" });
  const table = h("table", { "aria-label": "sessions" },
    h("thead", {}, h("tr", {}, ["Started", "Subject", "Target", "Protocol", "Status", "Commands", "Frames", "Session"]
      .map((c) => h("th", { class: ["Commands", "Frames"].includes(c) ? "num" : undefined }, c)))), tbody);
  setPage("Sessions", "sessions", h("h1", {}, "Sessions"), form, table, more, status);

  const q = new URLSearchParams();
  for (const [name] of FILTERS) {
    let v = params.get(name);
    if (!v) continue;
    if (name === "since" || name === "until") v = new Date(v).toISOString();
    q.set(name, v);
  }
  let cursor = null;
  let loading = false;
  const rows = new Map();
  const load = async () => {
    if (loading) return;
    loading = true;
    more.hidden = true;
    try {
      if (cursor) q.set("cursor", cursor);
      const page = await getJSON(`/sessions?limit=50&${q}`);
      for (const s of page.sessions) {
        const tr = sessionRow(s);
        rows.set(s.session_id, tr);
        tbody.append(tr);
      }
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      status.textContent = rows.size ? `${rows.size} session${rows.size === 1 ? "" : "s"}${cursor ? ", more below" : ""}` : "No sessions match.";
    } catch (err) {
      return errorPage(err);
    } finally {
      loading = false;
    }
  };
  more.addEventListener("click", load);
  const io = new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting) && cursor) load(); });
  io.observe(more);
  cleanup.push(() => io.disconnect());
  // Live sessions update in place.
  const timer = setInterval(async () => {
    for (const [id, tr] of rows) {
      if (tr.dataset.status !== "active") continue;
      try {
        const s = await getJSON(`/sessions/${id}`);
        const fresh = sessionRow(s);
        if (tr.classList.contains("selected")) fresh.classList.add("selected");
        tr.replaceWith(fresh);
        rows.set(id, fresh);
      } catch { /* the next tick retries */ }
    }
  }, 3000);
  cleanup.push(() => clearInterval(timer));
  load();
}

function sessionRow(s) {
  return h("tr", { dataset: { id: s.session_id, status: s.status } },
    h("td", {}, fmtTime(s.started_at)), h("td", {}, safe(s.subject)), h("td", {}, safe(s.target)), h("td", {}, s.protocol.toLowerCase()),
    h("td", {}, statusBadge(s.status)), h("td", { class: "num" }, s.commands), h("td", { class: "num" }, s.frames),
    h("td", {}, h("a", { href: `/sessions/${s.session_id}` }, s.session_id.slice(0, 13) + "…")));
}

// Session page: identity, verify badge, command timeline, replay, downloads.
async function sessionPage(id) {
  let s;
  try {
    s = await getJSON(`/sessions/${encodeURIComponent(id)}`);
  } catch (err) {
    return errorPage(err);
  }
  const badge = h("button", { type: "button", class: "badge warn", id: "verify", disabled: true }, "verifying…");
  const report = h("dialog", { id: "verify-report", "aria-labelledby": "verify-title" });
  const live = s.status === "active";
  const meta = h("dl", { class: "meta", id: "session-meta" }, [
    ["Subject", `${s.subject}${s.email ? ` <${s.email}>` : ""}`], ["Issuer", s.issuer], ["Groups", s.groups.join(", ") || "none"],
    ["Target", `${s.target} (${s.protocol.toLowerCase()})`], ["Client", s.client_addr], ["Gateway", s.gateway_id],
    ["Started", fmtTime(s.started_at)], ["Ended", s.ended_at ? fmtTime(s.ended_at) : "—"],
    ["Status", [statusBadge(s.status), s.end_reason ? ` ${s.end_reason}` : ""]],
    ["Recorded", `${s.frames} frames, ${s.commands} commands`], ["Integrity", badge]]
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const base = `${API}/sessions/${s.session_id}/replay`;
  const proto = s.protocol.toLowerCase();
  const downloads = h("p", { class: "downloads" }, "Download: ",
    proto === "ssh" ? h("a", { href: `${base}?format=asciicast`, download: `${s.session_id}.cast` }, "asciicast") : null,
    proto === "http" ? h("a", { href: `${base}?format=har`, download: `${s.session_id}.har` }, "HAR") : null,
    h("a", { href: `${base}?format=json`, download: `${s.session_id}.ndjson` }, "JSON"),
    h("a", { href: `${base}?format=text`, download: `${s.session_id}.txt` }, "text"));
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "commands" });
  const replay = h("section", { id: "replay", "aria-label": "replay" });
  setPage(`Session ${s.session_id}`, "session",
    h("h1", {}, `${s.subject} on ${s.target}`, " ", statusBadge(s.status)), meta, downloads,
    h("div", { class: "session-grid" }, h("section", { "aria-label": "command timeline" }, h("h2", {}, "Commands"), timeline), replay), report);

  verifyBadge(s, badge, report);
  // The timeline jumps whichever view the protocol has; SSH puts its commands on
  // the player's timeline as markers, so it waits for the first page of them.
  const view = {};
  const firstPage = loadCommands(s, timeline, view);
  const player = proto === "ssh" ? sshPlayer(s, replay, firstPage)
    : proto === "postgres" ? pgTranscript(s, replay)
    : proto === "http" || proto === "kubernetes" ? textReplay(s, replay, proto)
    : unsupported(replay, proto);
  view.jump = player.jump;
  await firstPage;
  if (live) followLive(s, timeline, view);
}

// textReplay shows the API's text replay of an HTTP or Kubernetes session, one
// block per exchange (the API strips control characters from it), streamed in
// as it arrives. A command jumps to the exchange its first frame opened.
function textReplay(s, el, proto) {
  const list = h("div", { id: "exchanges", "aria-label": proto === "kubernetes" ? "API calls" : "exchanges" });
  const state = h("p", { class: "muted", id: "exchanges-state", "aria-live": "polite" }, "loading");
  el.append(h("h2", {}, proto === "kubernetes" ? "API calls" : "Exchanges"), state, list);
  // HTTP blocks begin "* exchange N at TIME (seq A-B)", Kubernetes calls "$ ".
  const starts = /^(\* exchange |\$ )/;
  const noun = proto === "kubernetes" ? "call" : "exchange";
  const counted = (n) => `${n} ${noun}${n === 1 ? "" : "s"}`;
  const bySeq = new Map();
  let blocks = 0;
  let cur = null;
  const addLine = (line) => {
    if (!cur || starts.test(line)) {
      cur = h("pre", { class: "exchange", tabindex: "-1" });
      const m = /\(seq (\d+)/.exec(line);
      if (m) bySeq.set(Number(m[1]), cur);
      blocks++;
      list.append(cur);
    }
    cur.append(line + "\n"); // a text node: rewriting textContent per line is quadratic in a long body
  };
  const done = (async () => {
    const resp = await api(`/sessions/${s.session_id}/replay?format=text`);
    await readLines(resp, addLine, () => { state.textContent = `${counted(blocks)}…`; });
    state.textContent = counted(blocks);
    list.dataset.complete = "true";
  })().catch((err) => { state.textContent = `replay unavailable: ${err.message}`; });
  return {
    async jump(c) {
      await done;
      markTarget(list, ".exchange", lastAtOrBefore(bySeq, c.command_seq) || list.firstChild);
    },
  };
}

function unsupported(el, proto) {
  el.append(h("p", { class: "muted" }, `${proto} sessions have no replay view yet; download their frames as JSON.`));
  return { jump() {} };
}

async function verifyBadge(s, badge, dialog) {
  let rep;
  try {
    rep = await getJSON(`/sessions/${s.session_id}/verify`);
  } catch (err) {
    badge.textContent = "verify unavailable";
    badge.title = err.message;
    return;
  }
  const first = rep.problems && rep.problems[0];
  badge.disabled = false;
  if (rep.ok) {
    badge.className = "badge ok";
    badge.textContent = "✓ verified";
  } else if (first) {
    badge.className = "badge bad";
    badge.textContent = `✗ verify failed at seq ${first.seq}`;
  } else {
    badge.className = "badge warn";
    badge.textContent = `! ${rep.status}`;
  }
  badge.dataset.ok = String(rep.ok);
  dialog.replaceChildren(
    h("h2", { id: "verify-title" }, `Verification: ${rep.status}`),
    h("dl", { class: "meta" },
      h("dt", {}, "Frames"), h("dd", {}, `${rep.frames} (last seq ${rep.last_seq})`),
      h("dt", {}, "Ended"), h("dd", {}, rep.ended ? `yes: ${rep.end_reason || ""}` : "no"),
      h("dt", {}, "Signature"), h("dd", {}, JSON.stringify(rep.signature)),
      h("dt", {}, "Masked frames"), h("dd", {}, rep.masked_frames)),
    rep.problems && rep.problems.length
      ? h("ol", { class: "problems", id: "problems" }, rep.problems.map((p) =>
        h("li", {}, `seq ${p.seq}${p.seq_end > p.seq ? `..${p.seq_end}` : ""}: ${p.kind}: ${p.detail}`)))
      : h("p", {}, "No problems found."),
    h("form", { method: "dialog" }, h("button", {}, "Close")));
  badge.addEventListener("click", () => dialog.showModal());
}

async function loadCommands(s, timeline, player, fromSeq = 0) {
  let page;
  try {
    page = await getJSON(`/sessions/${s.session_id}/commands?limit=500&from_seq=${fromSeq}`);
  } catch (err) {
    timeline.append(h("li", { class: "error" }, err.message));
    return [];
  }
  const t0 = new Date(s.started_at).getTime();
  for (const c of page.commands) {
    if (timeline.querySelector(`[data-seq="${c.command_seq}"]`)) continue;
    const at = (new Date(c.started_at).getTime() - t0) / 1000;
    const state = c.error ? ` ✗ ${safe(c.error)}` : c.exit_status !== undefined && c.exit_status !== null ? ` → ${c.exit_status}` : "";
    const btn = h("button", { type: "button", title: `seq ${c.command_seq}` },
      h("span", { class: "t" }, `+${at.toFixed(1)}s`), safe(c.text || c.kind), h("span", { class: "muted" }, state));
    btn.addEventListener("click", () => {
      for (const li of timeline.querySelectorAll("li.selected")) li.classList.remove("selected");
      btn.parentElement.classList.add("selected");
      player.jump(c);
    });
    timeline.append(h("li", { dataset: { seq: c.command_seq } }, btn));
  }
  if (page.next_from_seq !== undefined && page.next_from_seq !== null) {
    const more = h("li", {}, h("button", { type: "button" }, "more commands…"));
    more.firstChild.addEventListener("click", () => { more.remove(); loadCommands(s, timeline, player, page.next_from_seq); });
    timeline.append(more);
  }
  return page.commands;
}

function followLive(s, timeline, player) {
  const timer = setInterval(async () => {
    let fresh;
    try {
      fresh = await getJSON(`/sessions/${s.session_id}`);
    } catch { return; }
    await loadCommands(fresh, timeline, player);
    if (fresh.status !== "active") {
      clearInterval(timer);
      route(); // the finished session, replay and badge in full
    }
  }, 2000);
  cleanup.push(() => clearInterval(timer));
}

// SSH: the terminal played by asciinema-player, command markers on its timeline.
function sshPlayer(s, el, commands) {
  const term = h("div", { id: "player", "aria-label": "terminal replay" });
  const state = h("span", { class: "muted", id: "player-state", "aria-live": "polite" }, "loading");
  const speed = h("select", { id: "speed", "aria-label": "speed" }, [0.5, 1, 2, 4, 8, 16].map((v) => h("option", { value: v, selected: v === 1 }, `${v}×`)));
  const playBtn = h("button", { type: "button", id: "play" }, "Play");
  const pauseBtn = h("button", { type: "button", id: "pause" }, "Pause");
  const endBtn = h("button", { type: "button", id: "to-end" }, "To end");
  el.append(h("h2", {}, "Terminal"), h("div", { class: "controls" }, playBtn, pauseBtn, endBtn, h("label", {}, "Speed ", speed), state), term);
  let player = null;
  let cast = null;
  let t0 = 0;
  let markers = [];
  const create = (startAt = 0, autoPlay = false) => {
    if (player) player.dispose();
    term.replaceChildren();
    player = window.AsciinemaPlayer.create({ data: cast }, term, {
      speed: Number(speed.value), startAt, autoPlay, idleTimeLimit: 2, fit: "width", markers, terminalFontSize: "small",
    });
    player.addEventListener("playing", () => { state.textContent = "playing"; term.dataset.state = "playing"; });
    player.addEventListener("pause", () => { state.textContent = "paused"; term.dataset.state = "paused"; });
    player.addEventListener("ended", () => { state.textContent = "ended"; term.dataset.state = "ended"; });
  };
  // A long session's cast takes a while to arrive: its first screen is shown as soon
  // as the first part is here, and the whole cast replaces it when complete.
  const FIRST_PART = 64 << 10;
  const ready = (async () => {
    const resp = await api(`/sessions/${s.session_id}/replay?format=asciicast`);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let partial = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (!partial && text.length >= FIRST_PART && text.indexOf("\n") >= 0) {
        partial = true;
        cast = text.slice(0, text.lastIndexOf("\n") + 1);
        await setup();
        state.textContent = "loading the rest…";
        term.dataset.state = "partial";
      }
    }
    cast = text;
    await setup(partial ? await player.getCurrentTime() : 0);
    state.textContent = "ready";
    term.dataset.state = "ready";
  })().catch((err) => { state.textContent = `replay unavailable: ${err.message}`; });
  const setup = async (at = 0) => {
    const header = JSON.parse(cast.slice(0, cast.indexOf("\n")) || "{}");
    // The cast starts at the terminal channel's request; its header has whole
    // seconds, so a marker may land up to a second early, never after its command.
    t0 = (header.timestamp || 0) + 1;
    markers = (await commands).map((c) => [when(c), safe(c.text || c.kind)]);
    create(at);
  };
  const when = (c) => Math.max(0, new Date(c.started_at).getTime() / 1000 - t0);
  playBtn.addEventListener("click", async () => { await ready; player.play(); });
  pauseBtn.addEventListener("click", async () => { await ready; player.pause(); });
  endBtn.addEventListener("click", async () => {
    await ready;
    create(0, false);
    await player.seek("100%");
    state.textContent = "ended";
    term.dataset.state = "ended";
  });
  speed.addEventListener("change", async () => {
    await ready;
    const at = await player.getCurrentTime();
    create(at, true);
  });
  cleanup.push(() => player && player.dispose());
  return {
    async jump(c) {
      await ready;
      await player.seek(when(c));
      term.focus?.();
    },
  };
}

// Postgres: the transcript, read as NDJSON and shown as it arrives.
function pgTranscript(s, el) {
  const list = h("div", { id: "transcript", "aria-label": "transcript" });
  const state = h("p", { class: "muted", id: "transcript-state", "aria-live": "polite" }, "loading");
  el.append(h("h2", {}, "Transcript"), state, list);
  const bySeq = new Map();
  const done = (async () => {
    const resp = await api(`/sessions/${s.session_id}/replay?format=json&max_rows=200`);
    let n = 0;
    let batch = [];
    await readLines(resp, (line) => { if (line.trim()) batch.push(pgEvent(JSON.parse(line), bySeq)); }, () => {
      list.append(...batch.filter(Boolean));
      n += batch.length;
      batch = [];
      state.textContent = `${n} events…`;
    });
    state.textContent = `${bySeq.size} statements`;
    list.dataset.complete = "true";
  })().catch((err) => { state.textContent = `replay unavailable: ${err.message}`; });
  return {
    async jump(c) {
      await done;
      // A command starts at its statement's first frame.
      markTarget(list, ".stmt", lastAtOrBefore(bySeq, c.command_seq) || list.firstChild);
    },
  };
}

// readLines calls onLine with each line of a streamed response and onChunk
// after each part of it that arrived, the last (unterminated) line included.
async function readLines(resp, onLine, onChunk) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    onChunk();
  }
  if (buf) {
    onLine(buf);
    onChunk();
  }
}

// lastAtOrBefore is the node of bySeq (seq → node) with the greatest seq not after seq.
function lastAtOrBefore(bySeq, seq) {
  let best = null;
  for (const [k, node] of bySeq) if (k <= seq && (!best || k > best[0])) best = [k, node];
  return best && best[1];
}

// markTarget highlights node, one of list's sel elements, and brings it into view.
function markTarget(list, sel, node) {
  if (!node) return;
  for (const t of list.querySelectorAll(`${sel}.target`)) t.classList.remove("target");
  node.classList.add("target");
  node.scrollIntoView({ block: "start" });
  node.focus();
}

function pgEvent(ev, bySeq) {
  if (ev.type === "statement") {
    const st = ev.statement;
    const node = h("article", { class: "stmt", tabindex: "-1", dataset: { seq: ev.seq } },
      h("pre", {}, safe(st.text)),
      h("div", { class: "timing" }, `${fmtTime(st.start)} · ${fmtDur(st.duration_ms)} · seq ${ev.seq}–${st.seq_end}${st.masked ? " · masked" : ""}`),
      (st.results || []).map(resultTable),
      st.error ? h("p", { class: "pgerr", role: "note" }, safe(`${st.error.severity} ${st.error.code}: ${st.error.message}`)) : null,
      (st.notices || []).map((n) => h("p", { class: "muted" }, safe(n))));
    bySeq.set(ev.seq, node);
    return node;
  }
  if (ev.type === "error" && ev.error) return h("p", { class: "pgerr" }, safe(`seq ${ev.seq}: ${ev.error.severity} ${ev.error.code}: ${ev.error.message}`));
  if (ev.type === "note" || ev.type === "session.denied") return h("p", { class: "muted" }, safe(`seq ${ev.seq}: ${ev.message || ev.type}`));
  if (ev.type === "session.end" && ev.end) return h("p", { class: "muted" }, `seq ${ev.seq}: session ended: ${ev.end.reason}`);
  return null;
}

function resultTable(r) {
  if (!r.columns || !r.columns.length) return r.tag ? h("p", { class: "muted" }, r.tag) : null;
  return h("div", {},
    h("table", { class: "result" },
      h("thead", {}, h("tr", {}, r.columns.map((c) => h("th", { title: c.type || "" }, safe(c.name))))),
      h("tbody", {}, (r.rows || []).map((row) => h("tr", {}, row.map((v) => v === null ? h("td", { class: "null" }, "NULL") : h("td", {}, safe(v))))))),
    h("p", { class: "muted" }, `${r.tag || ""}${r.truncated ? ` · showing ${r.rows.length} of ${r.row_count} rows` : ""}`));
}

// SQL for auditors: the API's POST /sql with its limits; CSV made from the result.
function sqlPage() {
  if (!me.auditor) {
    setPage("SQL", "sql", h("p", { class: "error" }, "SQL is for auditors."));
    return;
  }
  const text = h("textarea", { id: "sql-text", "aria-label": "SQL statement", spellcheck: "false" },
    "SELECT session_id, subject, target, protocol, status, started_at\nFROM sessions FINAL\nORDER BY started_at DESC\nLIMIT 100");
  const maxRows = h("input", { type: "number", id: "sql-max-rows", min: 1, value: 1000 });
  const run = h("button", { type: "button", id: "sql-run" }, "Run (Ctrl+Enter)");
  const csv = h("button", { type: "button", id: "sql-csv", disabled: true }, "Download CSV");
  const out = h("div", { id: "sql-result", "aria-live": "polite" });
  let last = null;
  const exec = async () => {
    out.replaceChildren(h("p", { class: "muted" }, "running…"));
    try {
      const resp = await api("/sql", {
        method: "POST", headers: { ...HEADER, "Content-Type": "application/json" },
        body: JSON.stringify({ query: text.value, max_rows: Number(maxRows.value) || undefined }),
      });
      last = await resp.json();
      csv.disabled = false;
      out.replaceChildren(
        h("p", { class: "muted" }, `${last.row_count} rows`),
        last.error ? h("p", { class: "error" }, `incomplete: ${last.error.message}`) : null,
        h("table", {}, h("thead", {}, h("tr", {}, last.columns.map((c) => h("th", { title: c.type }, c.name)))),
          h("tbody", {}, last.rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, cell(v))))))));
    } catch (err) {
      csv.disabled = true;
      out.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    }
  };
  run.addEventListener("click", exec);
  text.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); exec(); } });
  csv.addEventListener("click", () => {
    if (!last) return;
    const quote = (v) => { const s = cell(v); return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s; };
    const lines = [last.columns.map((c) => quote(c.name)).join(","), ...last.rows.map((r) => r.map(quote).join(","))];
    const url = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
    const a = h("a", { href: url, download: "tapline-sql.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  });
  setPage("SQL", "sql", h("h1", {}, "SQL"),
    h("p", { class: "muted" }, "Read-only SELECT statements, with the server's row, time and memory limits."),
    text, h("div", { class: "controls" }, h("label", {}, "Max rows ", maxRows), run, csv), out);
}

function cell(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

// ---- keyboard ----

function selectable() {
  if (main.dataset.page === "sessions") return [...document.querySelectorAll("#sessions tr")];
  if (main.dataset.page === "session") return [...document.querySelectorAll("#timeline li[data-seq]")];
  return [];
}

document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey || t.closest?.("input, textarea, select, dialog, #player")) return;
  const items = selectable();
  const cur = items.findIndex((el) => el.classList.contains("selected"));
  const select = (i) => {
    items.forEach((el) => el.classList.remove("selected"));
    const el = items[i];
    el.classList.add("selected");
    el.setAttribute("aria-selected", "true");
    (el.querySelector("a, button") || el).focus();
  };
  switch (e.key) {
  case "j": if (items.length) select(Math.min(cur + 1, items.length - 1)); break;
  case "k": if (items.length) select(Math.max(cur - 1, 0)); break;
  case "Enter":
    if (cur < 0 || t.closest("a, button")) return;
    (items[cur].querySelector("a, button")).click();
    break;
  case "/": { const f = document.querySelector("#filters input"); if (f) f.focus(); break; }
  case "g": navigate("/"); break;
  case "?": document.getElementById("help").showModal(); break;
  default: return;
  }
  e.preventDefault();
});

// ---- start ----

async function route() {
  if (!me) {
    try {
      me = await getJSON("/me");
    } catch (err) {
      return errorPage(err);
    }
    document.getElementById("who").textContent = `${me.subject}${me.auditor ? " (auditor)" : ""}`;
    document.getElementById("nav-sql").hidden = !me.auditor;
    const out = document.getElementById("logout");
    out.hidden = false;
    out.addEventListener("click", async () => {
      await fetch("/auth/logout", { method: "POST", headers: HEADER, credentials: "same-origin" });
      me = null;
      location.assign("/");
    });
  }
  const path = location.pathname;
  let m;
  if (path === "/") return sessionsPage();
  if (path === "/sql") return sqlPage();
  if ((m = path.match(/^\/sessions\/([0-9a-fA-F-]{1,64})$/))) return sessionPage(m[1]);
  notFoundPage();
}

route();
