// errand's dashboard: a small single-page app over errand's own HTTP API. Every request
// carries the bearer token kept in sessionStorage; the server decides what the caller may see.
"use strict";

const TOKEN_KEY = "errand.token";
const STATES = ["pending", "scheduled", "running", "retrying", "success", "failed", "cancelled"];
const LIVE = ["pending", "scheduled", "running", "retrying"];
const REFRESH_MS = 1000;

// `gen` changes whenever the view changes or reloads: an answer that arrives for an older one
// is dropped (it neither draws nor schedules another poll).
const app = { me: null, timer: null, stream: null, view: null, gen: 0 };

// ---- DOM helpers -------------------------------------------------------------------------

/** Builds an element: attributes (on* are listeners), then children (strings become text;
 * arrays, nested too, are spread; null, undefined and false are left out). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function main() { return document.getElementById("main"); }

/** Replaces el's children (as h() takes them); the element of the same id gets the focus back
 * if it had it. */
function redraw(el, ...children) {
  const active = document.activeElement;
  const focusedId = active && active.id && el.contains(active) ? active.id : "";
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (focusedId) document.getElementById(focusedId)?.focus();
}

function announce(text) { document.getElementById("announce").textContent = text; }

function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return d.toLocaleString(undefined, { hour12: false });
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

function stateBadge(state) { return h("span", { class: `badge s-${state}` }, String(state).replace(/_/g, " ")); }

function ownerText(owner) {
  if (!owner) return "—";
  const user = owner.user_id || "(no user)";
  return owner.tenant ? `${user} @ ${owner.tenant}` : user;
}

// ---- API ---------------------------------------------------------------------------------

class SignedOut extends Error {}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = Object.assign({ authorization: `Bearer ${token()}` }, options.headers || {});
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401) {
    const message = body && body.error ? body.error.message : "the token was refused";
    signOut(`Signed out: ${message}. Paste a new token.`);
    throw new SignedOut(message);
  }
  if (!res.ok) {
    const err = new Error(body && body.error ? body.error.message : `HTTP ${res.status}`);
    err.status = res.status;
    err.code = body && body.error ? body.error.code : undefined;
    throw err;
  }
  return body;
}

/** Follows a task's Server-Sent Events with the bearer header (EventSource cannot send one). */
async function follow(id, onRecord, signal) {
  const res = await fetch(`/v1/tasks/${id}/events`, {
    headers: { authorization: `Bearer ${token()}`, accept: "text/event-stream" },
    signal,
  });
  if (!res.ok || !res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = chunk.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (data) {
        try { onRecord(JSON.parse(data)); } catch (_) { /* a keep-alive or foreign event */ }
      }
    }
  }
}

// ---- Sign-in -----------------------------------------------------------------------------

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  app.me = null;
  stopLive();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  const input = h("textarea", { id: "token", name: "token", rows: 4, required: true,
    autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    await start();
  } },
  h("h1", {}, "Sign in"),
  message ? h("p", { class: "error", role: "alert" }, message) : null,
  h("label", { for: "token" }, "Bearer token"),
  input,
  h("p", { class: "hint" }, "Ask your operator, or run ", h("code", {}, "errand ui --user NAME"),
    ". The token stays in this tab only."),
  h("button", { type: "submit", class: "primary" }, "Sign in"));
  main().replaceChildren(form);
  input.focus();
}

// ---- Routing -----------------------------------------------------------------------------

function navigate(path) {
  history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href^='/ui/']");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", () => route());

function stopLive() {
  app.gen++;
  clearTimeout(app.timer);
  app.timer = null;
  if (app.stream) app.stream.abort();
  app.stream = null;
}

function route() {
  if (!app.me) return;
  stopLive();
  const path = location.pathname.replace(/\/+$/, "");
  const task = /^\/ui\/tasks\/([^/]+)$/.exec(path);
  let view = "tasks";
  if (task) { view = "task"; renderTask(decodeURIComponent(task[1])); }
  else if (path === "/ui/queues") { view = "queues"; renderQueues(); }
  else if (path === "/ui/workers") { view = "workers"; renderWorkers(); }
  else if (path === "/ui/activity") { view = "activity"; renderActivity(); }
  else renderTasks();
  app.view = view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view || (view === "task" && a.dataset.view === "tasks")) {
      a.setAttribute("aria-current", "page");
    } else a.removeAttribute("aria-current");
  }
}

async function start() {
  takeTokenFromFragment();
  if (!token()) { renderSignIn(); return; }
  try {
    app.me = await api("/v1/me");
  } catch (e) {
    if (!(e instanceof SignedOut)) renderSignIn(`Could not sign in: ${e.message}`);
    return;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent =
    `${app.me.user_id || app.me.worker || "?"}${app.me.tenant ? " @ " + app.me.tenant : ""}${app.me.admin ? " (admin)" : ""}`;
  for (const a of document.querySelectorAll("#nav [data-admin]")) a.hidden = !app.me.admin;
  route();
}

// ---- Confirmation ------------------------------------------------------------------------

function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// ---- Task list ---------------------------------------------------------------------------

const listState = { filters: {}, cursors: [], selected: new Set() };
/** List filters that the bulk call's filter does not have. */
const BULK_UNFILTERED = ["q", "created_after", "created_before", "owner"];

function listParams(extra) {
  const p = new URLSearchParams();
  const f = listState.filters;
  for (const k of ["status", "name", "queue", "q", "owner"]) if (f[k]) p.set(k, f[k]);
  for (const k of ["created_after", "created_before"]) {
    if (f[k]) p.set(k, new Date(f[k]).toISOString());
  }
  for (const [k, v] of Object.entries(extra || {})) if (v) p.set(k, v);
  return p;
}

function renderTasks() {
  const f = listState.filters;
  const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks",
    onsubmit: (e) => { e.preventDefault(); readFilters(form); listState.cursors = []; loadTasks(); } },
  field("f-q", "Search id, correlation or request id", h("input", { id: "f-q", name: "q", type: "search", value: f.q || "" })),
  field("f-status", "State", h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s, selected: f.status === s }, s)))),
  field("f-name", "Task name", h("input", { id: "f-name", name: "name", value: f.name || "" })),
  field("f-queue", "Queue", h("input", { id: "f-queue", name: "queue", value: f.queue || "" })),
  field("f-after", "Created after", h("input", { id: "f-after", name: "created_after", type: "datetime-local", value: f.created_after || "" })),
  field("f-before", "Created before", h("input", { id: "f-before", name: "created_before", type: "datetime-local", value: f.created_before || "" })),
  app.me.admin ? field("f-owner", "Owner (user id)", h("input", { id: "f-owner", name: "owner", value: f.owner || "" })) : null,
  h("div", { class: "field buttons" },
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("button", { type: "button", onclick: () => { listState.filters = {}; listState.cursors = []; renderTasks(); } }, "Clear")));
  // `POST /v1/tasks/bulk` filters on state, name and queue only: with any other filter set,
  // "all matching" would act on more tasks than the list shows.
  const narrower = BULK_UNFILTERED.filter((k) => f[k]).length > 0;
  const bulk = h("div", { class: "bulk", role: "group", "aria-label": "Actions on tasks" },
    h("span", { id: "selected-count" }, "0 selected"),
    h("button", { type: "button", id: "bulk-retry", onclick: () => bulkAction("retry", false) }, "Retry selected"),
    h("button", { type: "button", id: "bulk-cancel", onclick: () => bulkAction("cancel", false) }, "Cancel selected"),
    h("button", { type: "button", disabled: narrower, "aria-describedby": narrower ? "matching-hint" : null,
      onclick: () => bulkAction("retry", true) }, "Retry all matching"),
    h("button", { type: "button", disabled: narrower, "aria-describedby": narrower ? "matching-hint" : null,
      onclick: () => bulkAction("cancel", true) }, "Cancel all matching"),
    narrower ? h("span", { class: "hint", id: "matching-hint" },
      "“All matching” uses the state, name and queue filters only: clear the others to use it.") : null);
  main().replaceChildren(
    h("h1", {}, app.me.admin ? "All tasks" : "My tasks"),
    h("div", { id: "counts", class: "counts", role: "group", "aria-label": "Tasks per state" }),
    // Folded on phones (unless a filter is set), so that the list shows without scrolling.
    h("details", { class: "filter-box", open: !matchMedia("(max-width: 700px)").matches || Object.values(f).some(Boolean) },
      h("summary", {}, "Filters and search"), form),
    bulk,
    h("div", { id: "task-table", class: "table-wrap" }),
    h("nav", { class: "pager", "aria-label": "Pages" },
      h("button", { type: "button", id: "newer", onclick: () => { listState.cursors.pop(); loadTasks(); } }, "Newer"),
      h("button", { type: "button", id: "older", onclick: () => {
        if (listState.next) { listState.cursors.push(listState.next); loadTasks(); }
      } }, "Older")));
  loadTasks();
}

function readFilters(form) {
  const data = new FormData(form);
  listState.filters = {};
  for (const [k, v] of data.entries()) if (v) listState.filters[k] = String(v).trim();
}

async function loadTasks() {
  clearTimeout(app.timer);
  const gen = ++app.gen;
  const cursor = listState.cursors[listState.cursors.length - 1];
  try {
    const [page, counts] = await Promise.all([
      api(`/v1/tasks?${listParams({ limit: 25, cursor })}`),
      // The counts are per state of all the caller's tasks (one owner's for an admin who
      // names one): the other filters are the list's only.
      api(`/v1/tasks/counts?${listState.filters.owner ? new URLSearchParams({ owner: listState.filters.owner }) : ""}`)
        .catch(() => null),
    ]);
    if (gen !== app.gen) return;
    listState.next = page.next_cursor || null;
    renderTable(page.items);
    renderCounts(counts);
    document.getElementById("newer").disabled = listState.cursors.length === 0;
    document.getElementById("older").disabled = !listState.next;
  } catch (e) {
    if (e instanceof SignedOut || gen !== app.gen) return;
    const table = document.getElementById("task-table");
    if (table) {
      table.drawn = null;
      table.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  }
  // Live on the first page: a task submitted anywhere shows up within a second.
  if (gen === app.gen && app.view === "tasks" && listState.cursors.length === 0) {
    app.timer = setTimeout(() => { if (!document.hidden) loadTasks(); else app.timer = setTimeout(loadTasks, REFRESH_MS); }, REFRESH_MS);
  }
}

function renderCounts(body) {
  const box = document.getElementById("counts");
  if (!box) return;
  if (!body) { box.replaceChildren(); return; } // not stale numbers
  const counts = body.counts || body;
  redraw(box, ...STATES.map((s) => h("button", {
    type: "button", class: `count s-${s}`, "aria-pressed": listState.filters.status === s ? "true" : "false",
    "data-state": s, id: `count-${s}`, "aria-label": `${counts[s] ?? 0} ${s}`,
    onclick: () => {
      listState.filters.status = listState.filters.status === s ? undefined : s;
      listState.cursors = [];
      renderTasks();
    },
  }, h("span", { class: "n" }, String(counts[s] ?? 0)), h("span", {}, s))));
}

function renderTable(items) {
  const table = document.getElementById("task-table");
  if (!table) return;
  const visible = new Set(items.map((t) => t.id));
  for (const id of [...listState.selected]) if (!visible.has(id)) listState.selected.delete(id);
  updateSelected();
  // The list is read every second: an unchanged page is not drawn again (which would also
  // move the focus and the screen reader's place).
  const drawn = JSON.stringify([items, [...listState.selected]]);
  if (table.drawn === drawn) return;
  table.drawn = drawn;
  if (items.length === 0) {
    table.replaceChildren(h("p", { class: "empty" }, "No tasks match."));
    return;
  }
  const all = h("input", { type: "checkbox", id: "select-page", "aria-label": "Select every task on this page",
    checked: items.every((t) => listState.selected.has(t.id)),
    onchange: (e) => {
      for (const t of items) e.target.checked ? listState.selected.add(t.id) : listState.selected.delete(t.id);
      renderTable(items);
    } });
  const cols = ["Task", "Name", "Queue", "State", app.me.admin ? "Owner" : null, "Created", "Attempt"].filter(Boolean);
  redraw(table, h("table", { class: "tasks" },
    h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all), cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((t) => h("tr", { "data-id": t.id },
      h("td", { "data-label": "Select" }, h("input", { type: "checkbox", id: `select-${t.id}`, "aria-label": `Select task ${t.id}`,
        checked: listState.selected.has(t.id),
        onchange: (e) => { e.target.checked ? listState.selected.add(t.id) : listState.selected.delete(t.id); updateSelected(); } })),
      h("td", { "data-label": "Task" }, h("a", { href: `/ui/tasks/${t.id}`, id: `open-${t.id}`, class: "mono" }, t.id)),
      h("td", { "data-label": "Name" }, t.name),
      h("td", { "data-label": "Queue" }, t.queue),
      h("td", { "data-label": "State" }, stateBadge(t.status)),
      app.me.admin ? h("td", { "data-label": "Owner" }, ownerText(t.owner)) : null,
      h("td", { "data-label": "Created" }, fmtTime(t.created_at)),
      h("td", { "data-label": "Attempt" }, `${t.attempt}/${t.max_attempts}`))))));
}

function updateSelected() {
  const n = listState.selected.size;
  const label = document.getElementById("selected-count");
  if (label) label.textContent = `${n} selected`;
  for (const id of ["bulk-retry", "bulk-cancel"]) {
    const b = document.getElementById(id);
    if (b) b.disabled = n === 0;
  }
}

async function bulkAction(action, matching) {
  const ids = [...listState.selected];
  const filter = {};
  for (const k of ["status", "name", "queue"]) if (listState.filters[k]) filter[k] = listState.filters[k];
  const everyone = app.me.admin ? "every task of every user" : "every one of your tasks";
  const what = !matching ? `${ids.length} selected task${ids.length === 1 ? "" : "s"}`
    : Object.keys(filter).length ? `every task with ${Object.entries(filter).map(([k, v]) => `${k === "status" ? "state" : k} ${v}`).join(", ")}`
      : everyone;
  const verb = action === "retry" ? "Retry" : "Cancel";
  if (!(await confirmAction(`${verb} tasks`, `${verb} ${what}? Only the tasks whose state allows it change.`, verb))) return;
  try {
    const body = matching ? { action, filter } : { action, ids };
    const res = await api("/v1/tasks/bulk", { method: "POST", body });
    listState.selected.clear();
    announce(bulkSummary(res));
    const note = h("p", { class: "notice", role: "status" }, bulkSummary(res));
    document.querySelector(".bulk")?.after(note);
    setTimeout(() => note.remove(), 6000);
  } catch (e) {
    if (!(e instanceof SignedOut)) announce(`${verb} failed: ${e.message}`);
  }
  loadTasks();
}

function bulkSummary(res) {
  const counts = res && (res.counts || res.summary) || {};
  const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k.replace(/_/g, " ")}`);
  return parts.length ? `Done: ${parts.join(", ")}.` : "Done: nothing changed.";
}

// ---- Task detail -------------------------------------------------------------------------

function traceLink(traceId) {
  if (!traceId) return "—";
  const template = document.querySelector("meta[name='errand-trace-url']")?.content || "";
  if (!template || template.includes("{{")) return h("span", { class: "mono" }, traceId);
  const href = template.replace("{trace_id}", encodeURIComponent(traceId));
  return h("a", { href, class: "mono", rel: "noopener noreferrer", target: "_blank" }, traceId);
}

async function renderTask(id) {
  stopLive();
  const gen = app.gen;
  const current = () => gen === app.gen;
  main().replaceChildren(h("p", {}, "Loading…"));
  let record;
  try {
    record = await api(`/v1/tasks/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof SignedOut || !current()) return;
    main().replaceChildren(h("h1", {}, "Task"), h("p", { class: "error", role: "alert" },
      e.status === 404 ? "No such task (it does not exist, expired, or is not yours)." : e.message),
    h("p", {}, h("a", { href: "/ui/" }, "Back to the tasks")));
    return;
  }
  if (!current()) return;
  drawTask(record);
  if (!LIVE.includes(record.status) && !record.cancel_requested) return;
  // Events carry the record without its arguments, which never change: keep the first read's.
  const withArgs = (r) => ({ ...r, args: r.args === undefined ? record.args : r.args });
  const ctl = new AbortController();
  app.stream = ctl;
  follow(record.id, (r) => { if (current()) drawTask(withArgs(r)); }, ctl.signal)
    .catch(() => {})
    .finally(() => {
      // The stream ends at a final state; one last read catches the final record.
      if (app.stream === ctl && current()) {
        app.stream = null;
        api(`/v1/tasks/${record.id}`).then((r) => { if (current()) drawTask(r); }).catch(() => {});
      }
    });
}

function drawTask(t) {
  const dl = (pairs) => h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const actions = h("div", { class: "actions" },
    ["failed", "cancelled"].includes(t.status)
      ? h("button", { type: "button", class: "primary", id: "act-retry", onclick: () => act(t, "retry") }, "Retry") : null,
    LIVE.includes(t.status) && !t.cancel_requested
      ? h("button", { type: "button", class: "danger", id: "act-cancel", onclick: () => act(t, "cancel") }, "Cancel") : null);
  const progress = t.progress ? h("section", { "aria-labelledby": "h-progress" },
    h("h2", { id: "h-progress" }, "Progress"),
    h("progress", { max: t.progress.total || 1, value: Math.min(t.progress.current, t.progress.total || 1), "aria-label": "Progress" }),
    h("p", {}, progressText(t.progress))) : null;
  const steps = h("section", { "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps"),
    t.steps && t.steps.length ? h("ol", { class: "timeline" }, t.steps.map((s) => h("li", { class: `step s-${s.status}`, "data-step": s.name },
      h("span", { class: "step-name" }, s.name), " ", stateBadge(s.status), " ",
      h("span", { class: "muted" }, stepDuration(s)),
      s.error ? h("p", { class: "error" }, s.error) : null))) : h("p", { class: "muted" }, "No steps reported."));
  const error = t.error ? h("section", { "aria-labelledby": "h-error", class: "error-box" },
    h("h2", { id: "h-error" }, "Error"),
    dl([["Message", t.error.message], ["Kind", t.error.kind], ["Retryable", t.error.retryable ? "yes" : "no"]]),
    t.error.details ? h("pre", {}, JSON.stringify(t.error.details, null, 2)) : null) : null;
  // The log holds the attempts that did not succeed; a running or successful one is the record's.
  const attempts = [...(t.attempts || [])];
  if (t.attempt && ["running", "success"].includes(t.status)) {
    attempts.push({ attempt: t.attempt, started_at: t.started_at, ended_at: t.completed_at, outcome: t.status });
  }
  const history = (t.history || []);
  redraw(main(),
    h("p", {}, h("a", { href: "/ui/", id: "back" }, "← Tasks")),
    h("h1", {}, t.name, " ", stateBadge(t.status), t.cancel_requested && LIVE.includes(t.status) ? h("span", { class: "muted" }, " (cancellation requested)") : null),
    actions,
    dl([["Task id", h("span", { class: "mono" }, t.id)], ["Owner", ownerText(t.owner)], ["Queue", t.queue],
      ["Attempt", `${t.attempt} of ${t.max_attempts}`],
      ["Created", fmtTime(t.created_at)], t.run_at ? ["Runs at", fmtTime(t.run_at)] : null,
      ["Started", fmtTime(t.started_at)], ["Completed", fmtTime(t.completed_at)],
      t.next_attempt_at ? ["Next attempt", fmtTime(t.next_attempt_at)] : null, ["Updated", fmtTime(t.updated_at)],
      ["Request id", h("span", { class: "mono" }, t.request_id || "—")],
      ["Correlation id", h("span", { class: "mono" }, t.correlation_id || "—")],
      ["Trace", traceLink(t.trace_id)], t.key ? ["Idempotency key", t.key] : null]),
    progress, steps, error,
    h("section", { "aria-labelledby": "h-attempts" }, h("h2", { id: "h-attempts" }, "Attempts"),
      attempts.length ? h("table", {}, h("thead", {}, h("tr", {}, ["#", "Started", "Took", "Outcome", "Error"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, attempts.map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, fmtTime(a.started_at)),
          h("td", {}, a.started_at && a.ended_at ? fmtMs(new Date(a.ended_at) - new Date(a.started_at)) : "—"),
          h("td", {}, stateBadge(a.outcome)), h("td", {}, a.error ? `${a.error.kind}: ${a.error.message}` : "—")))))
        : h("p", { class: "muted" }, t.attempt ? `Attempt ${t.attempt} of ${t.max_attempts}${t.error ? `; the last failed: ${t.error.message}` : ""}.` : "Not attempted yet.")),
    h("section", { "aria-labelledby": "h-history" }, h("h2", { id: "h-history" }, "History"),
      history.length ? h("ul", { class: "history" }, history.map((a) => h("li", {},
        `${a.action}${a.outcome ? ` (${String(a.outcome).replace(/_/g, " ")})` : ""} by ${ownerText(a.by)} at ${fmtTime(a.at)}`)))
        : h("p", { class: "muted" }, "No one has acted on it.")),
    t.result !== undefined ? h("section", { "aria-labelledby": "h-result" }, h("h2", { id: "h-result" }, "Result"),
      h("pre", {}, JSON.stringify(t.result, null, 2))) : null,
    t.args !== undefined ? h("section", { "aria-labelledby": "h-args" }, h("h2", { id: "h-args" }, "Arguments"),
      h("pre", {}, JSON.stringify(t.args, null, 2))) : null);
}

function progressText(p) {
  const parts = [`${p.current} of ${p.total}`];
  if (p.total) parts.unshift(`${Math.round((100 * p.current) / p.total)}%`);
  if (p.message) parts.push(p.message);
  return parts.join(" — ");
}

function stepDuration(s) {
  if (!s.started_at) return "";
  const end = s.completed_at;
  return end ? fmtMs(new Date(end) - new Date(s.started_at)) : `since ${fmtTime(s.started_at)}`;
}

async function act(t, action) {
  const verb = action === "retry" ? "Retry" : "Cancel";
  if (!(await confirmAction(`${verb} task`, `${verb} ${t.name} (${t.id})?`, verb))) return;
  try {
    await api(`/v1/tasks/${t.id}/${action}`, { method: "POST" });
    announce(`${verb} sent.`);
  } catch (e) {
    if (!(e instanceof SignedOut)) announce(`${verb} failed: ${e.message}`);
  }
  renderTask(t.id);
}

// ---- Operator views ----------------------------------------------------------------------

async function adminView(title, path, draw) {
  main().replaceChildren(h("h1", {}, title), h("div", { id: "admin-body" }, "Loading…"));
  const gen = app.gen;
  const tick = async () => {
    try {
      const body = await api(path);
      if (gen !== app.gen) return;
      const el = document.getElementById("admin-body");
      if (el) el.replaceChildren(draw(body));
    } catch (e) {
      if (e instanceof SignedOut || gen !== app.gen) return;
      const el = document.getElementById("admin-body");
      if (el) el.replaceChildren(h("p", { class: "error", role: "alert" },
        e.status === 403 ? "This view is for operators (the admin role)." : e.message));
      return;
    }
    if (gen === app.gen) app.timer = setTimeout(tick, 5000);
  };
  tick();
}

function simpleTable(caption, cols, rows) {
  if (!rows.length) return h("p", { class: "empty" }, `No ${caption.toLowerCase()} yet.`);
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, cols.map(([c]) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([c, f]) => h("td", { "data-label": c }, f(r))))))));
}

function renderQueues() {
  adminView("Queues", "/v1/admin/queues", (body) => simpleTable("Queues", [
    ["Queue", (q) => q.queue], ["Waiting", (q) => q.waiting], ["Running", (q) => q.running],
    ["Per minute (last hour)", (q) => q.throughput_per_min.toFixed(1)],
    ["Succeeded", (q) => q.succeeded], ["Failed", (q) => q.failed], ["Retried", (q) => q.retried]], body.queues));
}

function renderWorkers() {
  adminView("Workers", "/v1/admin/workers", (body) => simpleTable("Workers", [
    ["Worker", (w) => h("span", { class: "mono" }, w.id)], ["Host", (w) => w.host], ["Language", (w) => w.language],
    ["Queues", (w) => (w.queues || []).join(", ")], ["Concurrency", (w) => w.concurrency],
    ["Running", (w) => w.running], ["Last heartbeat", (w) => fmtTime(w.last_seen)],
    ["Alive", (w) => (w.alive ? "yes" : "no")]], body.workers));
}

function renderActivity() {
  adminView("Activity, last hour", "/v1/admin/activity", (body) => {
    const m = body.minutes || [];
    return h("div", { class: "charts" },
      chart("Throughput (attempts per minute)", m, (p) => p.succeeded + p.failed, (v) => String(v)),
      chart("Failure rate", m, (p) => p.failure_rate, (v) => `${Math.round(v * 100)}%`),
      chart("Run time p50 (ms)", m, (p) => p.run_p50_ms ?? 0, fmtMs),
      chart("Run time p95 (ms)", m, (p) => p.run_p95_ms ?? 0, fmtMs),
      chart("Queue wait p50 (ms)", m, (p) => p.wait_p50_ms ?? 0, fmtMs),
      chart("Queue wait p95 (ms)", m, (p) => p.wait_p95_ms ?? 0, fmtMs));
  });
}

/** A bar chart of one value per minute, as SVG, with a text summary for screen readers. */
function chart(title, points, value, fmt) {
  const ns = "http://www.w3.org/2000/svg";
  const values = points.map(value);
  const max = Math.max(...values, 0) || 1;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${points.length * 5} 50`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  values.forEach((v, i) => {
    const r = document.createElementNS(ns, "rect");
    const height = (v / max) * 48;
    r.setAttribute("x", String(i * 5));
    r.setAttribute("y", String(50 - height));
    r.setAttribute("width", "4");
    r.setAttribute("height", String(height));
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${fmtTime(points[i].minute)}: ${fmt(v)}`;
    r.append(tip);
    svg.append(r);
  });
  const last = values.length ? values[values.length - 1] : 0;
  return h("figure", { class: "chart" }, h("figcaption", {}, title, h("span", { class: "muted" }, ` — now ${fmt(last)}, peak ${fmt(max === 1 && Math.max(...values, 0) === 0 ? 0 : max)}`)), svg);
}

// ---- Start -------------------------------------------------------------------------------

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
start();
