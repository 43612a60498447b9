// xdsbus console: a single page over the console's JSON API (docs/console.md). Plain JavaScript, no
// dependencies. Every value from the API is put in the page as text, never as markup.
"use strict";

const state = { scope: "", scopes: [], timeline: null, range: null, pick: null, seen: new Set(), rollback: false, asked: null, said: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

function failure(error) {
  show(el("p", { class: "error" }, String(error.message || error)));
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace("+00:00", "Z") : "";
}

// Unix seconds (a watcher's report) as the ISO times elsewhere on the page.
function unixTime(seconds) {
  return seconds ? when(new Date(seconds * 1000).toISOString().replace(".000Z", "Z")) : "";
}

function scopeQuery() {
  return `?scope=${encodeURIComponent(state.scope)}`;
}

function scopePath() {
  return `/api/scopes/${encodeURIComponent(state.scope)}`;
}

// -- routing ------------------------------------------------------------------------------------

function parseHash() {
  const [path, query] = (location.hash.replace(/^#/, "") || "/timeline").split("?");
  const parts = path.split("/").filter(Boolean);
  return { view: parts[0] || "timeline", args: parts.slice(1), query: new URLSearchParams(query || "") };
}

async function route() {
  const { view, args, query } = parseHash();
  if (query.get("scope")) state.scope = query.get("scope");
  document.getElementById("scope").value = state.scope;
  for (const link of document.querySelectorAll("nav a")) {
    const section = { version: "timeline", history: "objects" }[view] || view;
    link.classList.toggle("active", link.dataset.view === section);
  }
  try {
    if (view === "timeline") await timelineView();
    else if (view === "version") await versionView(Number(args[0]));
    else if (view === "diff") await diffView(args[0], args[1]);
    else if (view === "objects") await objectsView(query.get("q") || "", query.get("state") || "");
    else if (view === "history") await historyView(query.get("kind") || "", query.get("key") || "");
    else if (view === "sources") await sourcesView();
    else if (view === "proxies") await proxiesView();
    else show(el("p", {}, `No view ${view}.`));
  } catch (error) {
    failure(error);
  }
}

// -- timeline -----------------------------------------------------------------------------------

function triggerCell(triggers) {
  if (!triggers) return el("td", {}, "");
  const groups = triggers.groups.map((g) => `${g.kind} ${g.op} ×${g.count} (${g.source})`);
  const notes = [];
  if (triggers.purged) notes.push("events purged from the log");
  if (triggers.malformed) notes.push(`${triggers.malformed} malformed`);
  return el(
    "td",
    { class: "triggers" },
    el("div", {}, groups.join(", ") || "—"),
    triggers.keys.length ? el("div", { class: "keys" }, triggers.keys.join(", ")) : null,
    notes.length ? el("div", { class: "warning" }, notes.join("; ")) : null,
  );
}

function chart(versions, terms) {
  const width = 1000;
  const height = 120;
  const node = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  if (!versions.length) return node;
  const t0 = versions[0].time_ms;
  const t1 = versions[versions.length - 1].time_ms;
  const span = Math.max(t1 - t0, 1);
  const x = (t) => 10 + ((t - t0) / span) * (width - 20);
  const most = Math.max(...versions.map((v) => v.changed + v.removed), 1);
  const barWidth = Math.max(2, Math.min(12, (width - 20) / versions.length - 1));
  for (const term of terms) {
    node.append(svg("line", { class: "term", x1: x(term.time_ms), x2: x(term.time_ms), y1: 0, y2: height }));
  }
  for (const v of versions) {
    const h = 8 + (Math.log1p(v.changed + v.removed) / Math.log1p(most)) * (height - 30);
    const bar = svg("rect", {
      class: v.pin ? "bar pinned" : "bar", x: x(v.time_ms) - barWidth / 2, y: height - 14 - h, width: barWidth, height: h,
      "data-version": v.version,
    });
    const title = svg("title", {});
    title.textContent = `version ${v.version}: ${v.changed} changed, ${v.removed} removed${v.pin ? `, ${pinText(v.pin)}` : ""}`;
    bar.append(title);
    bar.addEventListener("click", () => { location.hash = `#/version/${v.version}${scopeQuery()}`; });
    node.append(bar);
  }
  const start = svg("text", { x: 10, y: height - 2 });
  start.textContent = when(versions[0].time);
  const end = svg("text", { x: width - 10, y: height - 2, "text-anchor": "end" });
  end.textContent = when(versions[versions.length - 1].time);
  node.append(start, end);
  return node;
}

async function loadTimeline(range) {
  // Following the head: the newest `width` versions; else the versions between two numbers.
  const query = range && !range.follow
    ? `from=${range.from}&to=${range.to}&limit=5000`
    : `limit=${range ? range.width : 50}`;
  const data = await api(`${scopePath()}/versions?${query}`);
  state.timeline = data;
  return data;
}

async function timelineView() {
  if (!state.scope) {
    show(el("p", { class: "muted" }, "No ledger yet: no scope has a version."));
    return;
  }
  let range = state.range && state.range.scope === state.scope ? state.range : null;
  if (!range) range = { scope: state.scope, follow: true, width: 50 };
  state.range = range;
  const data = await loadTimeline(range);
  const picked = data.versions;
  const all = data.all;
  const count = all.length;
  const low = picked.length ? picked[0].version : 0;
  const high = picked.length ? picked[picked.length - 1].version : 0;
  const terms = data.terms;
  const position = (version) => Math.max(0, all.findIndex(([v]) => v === version));

  // The range selector spans every version by position; its end at the head follows new versions.
  const fromInput = el("input", { type: "range", id: "range-from", min: 0, max: Math.max(0, count - 1), value: position(low) });
  const toInput = el("input", { type: "range", id: "range-to", min: 0, max: Math.max(0, count - 1), value: position(high) });
  const onRange = () => {
    const i = Math.min(Number(fromInput.value), Number(toInput.value));
    const j = Math.max(Number(fromInput.value), Number(toInput.value));
    state.range = j === count - 1
      ? { scope: state.scope, follow: true, width: j - i + 1 }
      : { scope: state.scope, follow: false, from: all[i][0], to: all[j][0] };
    timelineView().catch(failure);
  };
  fromInput.addEventListener("change", onRange);
  toInput.addEventListener("change", onRange);
  const zoom = (n) => () => {
    state.range = { scope: state.scope, follow: true, width: n };
    timelineView().catch(failure);
  };

  // The versions picked for a diff outlive a redraw (a new version arriving redraws the timeline).
  const pick = state.pick && state.pick.scope === state.scope ? state.pick : null;
  const a = el("input", { type: "number", id: "diff-a", min: 0, value: pick ? pick.a : picked.length > 1 ? picked[picked.length - 2].version : low });
  const b = el("input", { type: "number", id: "diff-b", min: 0, value: pick ? pick.b : high });
  const keep = () => { state.pick = { scope: state.scope, a: a.value, b: b.value }; };
  a.addEventListener("change", keep);
  b.addEventListener("change", keep);
  const go = el("button", {
    id: "diff-go",
    onclick: () => { location.hash = `#/diff/${a.value}/${b.value}${scopeQuery()}`; },
  }, "Diff A → B");

  const rows = picked.slice().reverse().map((v) => {
    const fresh = state.seen.size > 0 && !state.seen.has(`${state.scope}/${v.version}`);
    return el(
      "tr",
      { "data-version": v.version, class: fresh ? "new" : "" },
      el("td", {}, el("a", { href: `#/version/${v.version}${scopeQuery()}`, class: "version-link" }, v.version),
        v.pin ? el("span", { class: "badge pin", title: pinText(v.pin) }, v.pin.target ? `pinned → ${v.pin.target}` : "unpinned") : null),
      el("td", { class: "mono" }, when(v.time)),
      el("td", { class: "num" }, v.events),
      el("td", { class: "num" }, v.changed),
      el("td", { class: "num" }, v.removed),
      el("td", { class: "num" }, v.resources),
      el("td", { class: "num" }, bytes(v.changed_bytes)),
      triggerCell(v.triggers),
      el("td", {},
        el("button", { class: "pick-a", title: "compare from this version", onclick: () => { a.value = v.version; keep(); } }, "A"),
        el("button", { class: "pick-b", title: "compare to this version", onclick: () => { b.value = v.version; keep(); } }, "B"),
        state.rollback ? el("button", {
          class: "rollback", title: "serve this version's resources again (pin the scope)",
          onclick: () => { state.asked = { scope: state.scope, version: v.version }; timelineView().catch(failure); },
        }, "roll back") : null),
    );
  });
  for (const [v] of all) state.seen.add(`${state.scope}/${v}`);

  show(
    el("h2", {}, `Timeline of scope ${state.scope}`),
    el("p", { class: "muted", id: "timeline-summary" },
      `${data.count} versions, head ${data.head}; showing ${picked.length} (${low}–${high}).`,
      terms.length ? ` Dashed lines: a builder took the lease (${terms.map((t) => `term ${t.term} by ${t.holder}`).join(", ")}).` : "",
      data.pins.length ? ` ${data.pins.length} pinned versions.` : ""),
    pinBanner(data.pin_status),
    rollbackBar(),
    el("div", { class: "toolbar" },
      el("span", { class: "range" }, "from", fromInput, "to", toInput),
      el("button", { onclick: zoom(20) }, "last 20"),
      el("button", { onclick: zoom(100) }, "last 100"),
      el("button", { onclick: zoom(Math.min(count, 5000)) }, "all"),
      el("span", {}, "A", a, "B", b, go)),
    chart(picked, terms),
    el("table", { id: "timeline-table" },
      el("thead", {}, el("tr", {},
        el("th", {}, "version"), el("th", {}, "time"), el("th", { class: "num" }, "events"),
        el("th", { class: "num" }, "changed"), el("th", { class: "num" }, "removed"),
        el("th", { class: "num" }, "resources"), el("th", { class: "num" }, "size"),
        el("th", {}, "triggered by"), el("th", {}, "diff"))),
      el("tbody", {}, rows)),
  );
}

// -- pins and rollback (docs/rollback.md) -------------------------------------------------------

function pinText(pin) {
  const who = `by ${pin.operator || "?"} (${pin.via}, event ${pin.event_seq})`;
  return pin.target ? `pinned to version ${pin.target} ${who}` : `unpinned ${who}`;
}

// The builder's LedgerPin entry for the scope: pinned (and to what), refused, or released.
function pinBanner(status) {
  if (!status || !status.pin || !status.pin.target) return null;
  const p = status.pin;
  const refused = status.state === "rejected";
  return el("div", { id: "pin-banner", class: refused ? "banner refused" : "banner pinned" },
    el("strong", {}, refused ? `Pin to version ${p.target} refused` : `Pinned to version ${p.target}`),
    ` by ${p.by || "?"} (${p.via}, event ${p.event_seq})${p.reason ? `: “${p.reason}”` : ""}. `,
    refused ? status.reason : `Serving version ${p.serving_version}; unpinned, the fold (event ${p.folded_seq}) would serve ${p.unpinned_resources} resources, digest ${(p.unpinned_digest || "").slice(0, 12)}.`,
    state.rollback ? el("button", { id: "unpin", onclick: () => postPin("unpin", {}) }, "Unpin") : null);
}

// With --allow-rollback: the operator token (kept for this tab only), the rollback asked for and
// waiting for confirmation, and the last answer.
function rollbackBar() {
  if (!state.rollback) return null;
  const token = el("input", {
    type: "password", id: "operator-token", placeholder: "operator token", autocomplete: "off",
    value: sessionStorage.getItem("xdsbus-operator-token") || "",
  });
  token.addEventListener("input", () => sessionStorage.setItem("xdsbus-operator-token", token.value));
  const asked = state.asked && state.asked.scope === state.scope ? state.asked : null;
  return el("div", { class: "toolbar rollback-bar" },
    el("label", {}, "operator token ", token),
    asked ? el("span", {},
      `Roll scope ${asked.scope} back to version ${asked.version}? `,
      el("button", { id: "rollback-confirm", onclick: () => postPin("rollback", { version: asked.version }) }, `Roll back to ${asked.version}`),
      el("button", { onclick: () => { state.asked = null; timelineView().catch(failure); } }, "cancel")) : null,
    state.said ? el("span", { id: "rollback-result", class: state.said.ok ? "" : "error" }, state.said.text) : null);
}

async function postPin(action, body) {
  const token = (document.getElementById("operator-token") || {}).value || "";
  sessionStorage.setItem("xdsbus-operator-token", token);
  const response = await fetch(`${scopePath()}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ error: response.statusText }));
  state.asked = null;
  if (!response.ok) state.said = { ok: false, text: answer.error || `${response.status}` };
  else if (!answer.status) state.said = { ok: true, text: `event ${answer.event_seq} published; no verdict from the builder yet` };
  else state.said = { ok: answer.status.state === "accepted", text: `${answer.status.state}: ${answer.status.reason}` };
  await timelineView().catch(failure);
}

// -- one version ------------------------------------------------------------------------------

async function versionView(version) {
  const v = await api(`${scopePath()}/versions/${version}`);
  const summary = el("dl", { class: "summary" },
    ...[
      ["scope", v.scope], ["parent", v.parent], ["events", `${v.first_seq}–${v.last_seq} (${v.events})`],
      ["time", when(v.time)], ["digest", `${v.digest} (${v.digest_algorithm})`], ["resources", v.resources],
      ["translator", v.translator_version], ["changed bytes", bytes(v.changed_bytes)],
    ].flatMap(([k, value]) => [el("dt", {}, k), el("dd", { class: "mono" }, value)]),
  );
  const t = v.triggers;
  show(
    el("h2", {}, `Version ${v.version}`, v.pin ? el("span", { class: "badge pin", id: "version-pin" }, pinText(v.pin)) : null),
    el("p", {}, v.parent ? el("a", { href: `#/diff/${v.parent}/${v.version}${scopeQuery()}`, id: "diff-parent" }, `diff with parent ${v.parent}`) : "the first version"),
    summary,
    el("h3", {}, "Triggered by"),
    el("ul", { class: "triggers" },
      t.groups.map((g) => el("li", {}, `${g.kind} ${g.op} ×${g.count} from ${g.source}`)),
      t.purged ? el("li", { class: "warning" }, "some of its events are purged from the event log") : null),
    t.keys.length ? el("p", { class: "muted" }, t.keys.join(", ")) : null,
    el("h3", {}, `Changed (${v.changed_resources.length})`),
    el("table", { id: "changed-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "type"), el("th", {}, "name"), el("th", {}, "sha256"), el("th", { class: "num" }, "size"))),
      el("tbody", {}, v.changed_resources.map((r) => el("tr", {},
        el("td", {}, r.type), el("td", { class: "mono" }, r.name), el("td", { class: "mono" }, r.sha256.slice(0, 16)),
        el("td", { class: "num" }, bytes(r.size)))))),
    el("h3", {}, `Removed (${v.removed_resources.length})`),
    el("table", { id: "removed-table" },
      el("tbody", {}, v.removed_resources.map((r) => el("tr", {}, el("td", {}, r.type), el("td", { class: "mono" }, r.name))))),
  );
}

// -- diff ---------------------------------------------------------------------------------------

// Unchanged lines kept around a change; longer unchanged runs fold into one clickable line.
const CONTEXT = 3;

function sideBySide(rows) {
  const body = el("tbody");
  let i = 0;
  while (i < rows.length) {
    let j = i;
    while (j < rows.length && rows[j][0] === "=") j++;
    const run = j - i;
    if (run > CONTEXT * 2 + 2) {
      const head = i === 0 ? 0 : CONTEXT;
      const tail = j === rows.length ? 0 : CONTEXT;
      for (let k = i; k < i + head; k++) body.append(line(rows[k]));
      const hidden = rows.slice(i + head, j - tail);
      const fold = el("tr", { class: "fold" }, el("td", { colspan: 2 }, `⋯ ${hidden.length} unchanged lines`));
      fold.addEventListener("click", () => fold.replaceWith(...hidden.map(line)));
      body.append(fold);
      for (let k = j - tail; k < j; k++) body.append(line(rows[k]));
    } else {
      for (let k = i; k < j; k++) body.append(line(rows[k]));
    }
    if (j < rows.length) body.append(line(rows[j]));
    i = j + 1;
  }
  return el("table", { class: "sbs" }, el("colgroup", {}, el("col", { width: "50%" }), el("col", { width: "50%" })), body);
}

function line([op, left, right]) {
  return el("tr", { class: `op-${op}` }, el("td", { class: "l" }, left ?? ""), el("td", { class: "r" }, right ?? ""));
}

async function diffView(a, b) {
  if (a === undefined || b === undefined) {
    const vs = (await loadTimeline({ follow: true, width: 2 })).all;
    if (vs.length < 2) {
      show(el("p", { class: "muted" }, "Fewer than two versions: nothing to compare."));
      return;
    }
    location.hash = `#/diff/${vs[vs.length - 2][0]}/${vs[vs.length - 1][0]}${scopeQuery()}`;
    return;
  }
  show(el("p", { class: "muted" }, `Comparing ${a} and ${b}…`));
  const d = await api(`${scopePath()}/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const mark = { added: "+", removed: "−", changed: "~" };
  show(
    el("h2", { id: "diff-title" }, `Scope ${d.scope}: ${d.a} → ${d.b}`),
    el("p", { class: "muted" }, `${d.added} added, ${d.removed} removed, ${d.changed} changed`,
      d.without_bodies ? ` (${d.without_bodies} listed without bodies)` : "",
      ". Private keys are redacted; Secrets show sealed."),
    d.resources.length ? null : el("p", {}, "The two versions hold the same resources."),
    d.resources.map((r) => el("div", { class: `resource ${r.change}`, "data-type": r.type, "data-name": r.name },
      el("div", { class: "title" }, `${mark[r.change]} ${r.type} ${r.name}`),
      r.rows ? sideBySide(r.rows) : el("p", { class: "muted" }, "body not shown"))),
  );
}

// -- objects ------------------------------------------------------------------------------------

let searchTimer = null;

async function objectsView(query, wanted) {
  const search = el("input", { type: "search", id: "object-search", placeholder: "kind, name, source, reason…", value: query });
  const stateSelect = el("select", { id: "object-state" },
    ["", "accepted", "rejected", "ignored"].map((s) => el("option", { value: s, selected: s === wanted }, s || "any state")));
  const table = el("tbody");
  const count = el("span", { class: "muted", id: "object-count" });
  const refresh = async () => {
    const q = encodeURIComponent(search.value);
    const s = encodeURIComponent(stateSelect.value);
    history.replaceState(null, "", `#/objects?q=${q}&state=${s}&scope=${encodeURIComponent(state.scope)}`);
    const data = await api(`/api/objects?q=${q}&state=${s}`);
    count.textContent = `${data.objects.length} object${data.objects.length === 1 ? "" : "s"}`;
    table.replaceChildren(...data.objects.map((o) => el("tr", { "data-object": `${o.kind}/${o.key}` },
      el("td", { class: "mono" }, el("a", {
        href: `#/history?kind=${encodeURIComponent(o.kind)}&key=${encodeURIComponent(o.key)}&scope=${encodeURIComponent(state.scope)}`,
        title: "the versions its changes went into",
      }, `${o.kind}/${o.key}`)),
      el("td", { class: "mono" }, o.source),
      el("td", {}, el("span", { class: `badge ${o.state}` }, o.state)),
      el("td", {},
        o.reason ? el("div", { class: "reason" }, o.reason) : null,
        (o.warnings || []).map((w) => el("div", { class: "warning" }, `warning: ${w}`)),
        (o.errors || []).map((e) => el("div", { class: "reason" }, e.line ? `line ${e.line}: ${e.reason}` : e.reason)),
        (o.conditions || []).filter((c) => c.status !== "True").map((c) =>
          el("div", { class: "warning" }, `${c.type}=${c.status} (${c.reason}) ${c.message || ""}`))))));
  };
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => refresh().catch(failure), 200);
  });
  stateSelect.addEventListener("change", () => refresh().catch(failure));
  show(
    el("h2", {}, "Objects"),
    el("div", { class: "toolbar" }, search, stateSelect, count),
    el("table", { id: "objects-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "object"), el("th", {}, "source"), el("th", {}, "state"), el("th", {}, "why"))),
      table),
  );
  await refresh();
}

// -- one object's versions ----------------------------------------------------------------------

async function historyView(kind, key) {
  const q = `kind=${encodeURIComponent(kind)}&key=${encodeURIComponent(key)}`;
  show(el("p", { class: "muted" }, `Reading the events of ${kind} ${key}…`));
  const data = await api(`${scopePath()}/history?${q}`);
  const status = await api(`/api/objects?q=${encodeURIComponent(`${kind}/${key}`)}`);
  const own = status.objects.filter((o) => o.kind === kind && o.key === key);
  show(
    el("h2", { id: "history-title" }, `${kind} ${key}`),
    own.map((o) => el("p", {}, el("span", { class: `badge ${o.state}` }, o.state), " ",
      o.reason ? el("span", { class: "reason" }, o.reason) : null)),
    el("p", { class: "muted" }, `Its events in the log and the versions of scope ${state.scope} they went into.`,
      data.truncated ? " The log holds more events of this kind than were read." : ""),
    el("table", { id: "history-table" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "event"), el("th", {}, "operation"), el("th", {}, "source"), el("th", {}, "version"))),
      el("tbody", {}, data.changes.map((c) => el("tr", { "data-seq": c.seq },
        el("td", { class: "num" }, c.seq), el("td", {}, c.op), el("td", { class: "mono" }, c.source),
        el("td", {}, c.version
          ? el("a", { href: `#/version/${c.version}${scopeQuery()}` }, c.version)
          : el("span", { class: "muted" }, "after the head: in no version yet")))))),
  );
}

// -- sources ------------------------------------------------------------------------------------

async function sourcesView() {
  const data = await api("/api/sources");
  show(
    el("h2", {}, "Sources"),
    el("h3", {}, "Leases"),
    el("p", { class: "muted" }, "watch.<type>.<name>: a watcher's source; builder.<scope>: the scope's builder; others: replica groups."),
    el("table", { id: "leases-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "lease"), el("th", {}, "holder"), el("th", { class: "num" }, "revision"), el("th", {}, "last written"))),
      el("tbody", {}, data.leases.map((l) => el("tr", { "data-lease": l.name },
        el("td", { class: "mono" }, l.name), el("td", {}, l.holder), el("td", { class: "num" }, l.revision),
        el("td", {}, l.renewed ? `${when(l.renewed)} (${l.age_seconds.toFixed(1)} s ago)` : ""))))),
    el("h3", {}, "Watchers"),
    data.watchers.length
      ? el("table", { id: "watchers-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "source"), el("th", {}, "state"), el("th", {}, "holder"),
          el("th", { class: "num" }, "term"), el("th", {}, "publishing since"), el("th", {}, "last resync"),
          el("th", { class: "num" }, "lag"), el("th", { class: "num" }, "events this term"), el("th", {}, "last error"))),
        el("tbody", {}, data.watchers.map((w) => el("tr", { "data-source": w.source },
          el("td", { class: "mono" }, w.source),
          el("td", {}, el("span", { class: `badge ${w.state}` }, w.state),
            el("div", { class: "muted" }, `reported ${w.reported_seconds_ago.toFixed(1)} s ago`)),
          el("td", {}, w.holder), el("td", { class: "num" }, w.term),
          el("td", {}, unixTime(w.leading_since)),
          el("td", {}, w.resyncs ? `${unixTime(w.last_resync)} (${w.resyncs} in this term)` : "none yet"),
          el("td", { class: "num" }, w.lag_seconds === null ? "" : `${w.lag_seconds.toFixed(1)} s`),
          el("td", { class: "num" }, w.events_published),
          el("td", {}, w.last_error ? el("div", { class: "reason" }, `${unixTime(w.last_error_at)}: ${w.last_error}`) : "")))))
      : el("p", { class: "muted" }, "No watcher reports itself yet."),
    el("h3", {}, "Builders' terms"),
    el("table", { id: "terms-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "scope"), el("th", { class: "num" }, "term"), el("th", {}, "holder"), el("th", {}, "leads after"), el("th", {}, "since"))),
      el("tbody", {}, data.builders.map((t) => el("tr", {},
        el("td", {}, t.scope), el("td", { class: "num" }, t.term), el("td", {}, t.holder),
        el("td", {}, t.after_version), el("td", {}, when(t.time)))))),
    el("h3", {}, "Registries"),
    data.registries.length
      ? el("table", { id: "registries-table" },
        el("tbody", {}, data.registries.map((r) => el("tr", {},
          el("td", { class: "mono" }, r.key), el("td", {}, el("span", { class: `badge ${r.state}` }, r.state)),
          el("td", {}, r.reason ? el("div", { class: "reason" }, r.reason) : null,
            (r.warnings || []).map((w) => el("div", { class: "warning" }, w)))))))
      : el("p", { class: "muted" }, "No registry reports a status (no McpBridge lists one)."),
  );
}

// -- proxies ------------------------------------------------------------------------------------

async function proxiesView() {
  const data = await api("/api/proxies");
  if (!data.available) {
    show(el("h2", {}, "Proxies"), el("p", { class: "muted", id: "proxies-unavailable" }, `Not available: ${data.reason}`));
    return;
  }
  show(
    el("h2", {}, "Proxies"),
    el("p", { class: "muted" }, `${data.proxies.length} proxy streams; refreshed every 5 s.`),
    el("table", { id: "proxies-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "proxy"), el("th", {}, "scope"), el("th", {}, "edge"),
        el("th", { class: "num" }, "version"), el("th", { class: "num" }, "head"), el("th", {}, "types"))),
      el("tbody", {}, data.proxies.map((p) => el("tr", { "data-proxy": p.node_id },
        el("td", { class: "mono" }, p.node_id, p.cluster ? ` (${p.cluster})` : ""),
        el("td", {}, p.scope), el("td", { class: "mono" }, p.edge),
        el("td", { class: "num" }, p.version), el("td", { class: "num" }, p.head),
        el("td", {}, p.types.map((t) => el("div", {},
          `${t.type} `, el("span", { class: `badge ${t.state}` }, t.state),
          t.error ? el("div", { class: "reason" }, `NACK of ${t.nacked}: ${t.error}`) : null))))))),
  );
}

// -- live updates -------------------------------------------------------------------------------

function followLedger() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/live");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting"; live.className = "live off"; });
  source.addEventListener("ledger", (event) => {
    const notice = JSON.parse(event.data);
    if (notice.scope && !state.scopes.includes(notice.scope)) {
      loadScopes().then(route).catch(() => {});
      return;
    }
    const { view } = parseHash();
    if (view === "timeline" && (notice.kind === "resync" || notice.scope === state.scope)) {
      timelineView().catch(failure);
    }
  });
}

let proxiesTimer = null;

function pollProxies() {
  clearInterval(proxiesTimer);
  proxiesTimer = setInterval(() => {
    if (parseHash().view === "proxies") proxiesView().catch(failure);
  }, 5000);
}

async function loadScopes() {
  const data = await api("/api/scopes");
  state.scopes = data.scopes.map((s) => s.scope);
  if (!state.scope || !state.scopes.includes(state.scope)) {
    state.scope = state.scopes.includes("default") ? "default" : state.scopes[0] || "";
  }
  const select = document.getElementById("scope");
  select.replaceChildren(...state.scopes.map((s) => el("option", { value: s }, s)));
  select.value = state.scope;
}

async function start() {
  const select = document.getElementById("scope");
  select.addEventListener("change", () => {
    state.scope = select.value;
    const { view } = parseHash();
    location.hash = `#/${view === "version" || view === "diff" ? "timeline" : view}${scopeQuery()}`;
  });
  window.addEventListener("hashchange", route);
  try {
    const wanted = parseHash().query.get("scope");
    if (wanted) state.scope = wanted;
    await loadScopes();
    state.rollback = (await api("/api/config")).rollback;
  } catch (error) {
    failure(error);
    return;
  }
  followLedger();
  pollProxies();
  await route();
}

document.addEventListener("DOMContentLoaded", start);
