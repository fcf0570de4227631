// rolegate console: a hash-routed, read-only page over the console's JSON endpoints. Every view
// is a function of the URL (#/tenant/T/member/M?now=...), so any view can be linked to.
"use strict";

const main = document.getElementById("main");
const cache = new Map();

// Escapes text for HTML.
function h(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const enc = encodeURIComponent;

// GETs /api/NAME with params; rejects with the server's message.
async function api(name, params = {}, keep = false) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== "")).toString();
  const url = `/api/${name}${q ? "?" + q : ""}`;
  if (keep && cache.has(url)) return cache.get(url);
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  if (keep) cache.set(url, body);
  return body;
}

// The route: path segments and query parameters of the hash.
function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}
function link(parts, params) {
  const path = "#/" + parts.map(enc).join("/");
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString() : "";
  return q ? `${path}?${q}` : path;
}

function setNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function tenantTabs(t, current) {
  const tab = (name, label, href) =>
    `<a href="${href}" data-tab="${name}"${current === name ? ' aria-current="page"' : ""}>${label}</a>`;
  return `<div class="crumbs"><a href="#/">Tenants</a> / ${h(t)}</div>
    <nav class="tabs" aria-label="Tenant views">${tab("members", "Units &amp; members", link(["tenant", t]))}
    ${tab("simulate", "Simulator", link(["tenant", t, "simulate"]))}${tab("who", "Who can", link(["tenant", t, "who"]))}</nav>`;
}

// Renders the view the URL names, and records how long it took on <main data-render-ms>.
let renders = 0;
async function render() {
  const generation = ++renders;
  const started = performance.now();
  const { parts, params } = route();
  main.removeAttribute("data-rendered");
  try {
    if (parts.length === 0) await viewTenants();
    else if (parts[0] === "problems") await viewProblems(params);
    else if (parts[0] === "diff") await viewDiff();
    else if (parts[0] === "tenant" && parts.length === 2) await viewTenant(parts[1], params);
    else if (parts[0] === "tenant" && parts[2] === "member" && parts[3] !== undefined) await viewMember(parts[1], parts[3], params);
    else if (parts[0] === "tenant" && parts[2] === "simulate") await viewSimulate(parts[1], params);
    else if (parts[0] === "tenant" && parts[2] === "who") await viewWho(parts[1], params);
    else main.innerHTML = `<h1>Not found</h1><p><a href="#/">Back to the tenants</a></p>`;
  } catch (e) {
    main.insertAdjacentHTML("beforeend", `<p class="error" role="alert" id="error">${h(e.message)}</p>`);
  }
  if (generation !== renders) return;
  main.dataset.renderMs = (performance.now() - started).toFixed(1);
  // Painted: the next frame has been laid out.
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  if (generation !== renders) return;
  main.dataset.paintMs = (performance.now() - started).toFixed(1);
  main.dataset.sinceNav = performance.now().toFixed(1);
  main.dataset.rendered = location.hash || "#/";
}

async function viewTenants() {
  setNav("tenants");
  const o = await api("overview", {}, true);
  const cards = o.tenants
    .map(
      (t) => `<a class="card" href="${link(["tenant", t.tenant])}" data-tenant="${h(t.tenant)}">
      <h2>${h(t.tenant)}</h2><div class="muted">${t.members} members · ${t.units} units · ${t.actions} actions ·
      ${t.roles} roles · ${t.rules} rules</div><div class="muted">revision ${t.revision}</div></a>`
    )
    .join("");
  const problems = o.errors || o.warnings ? `<p><a href="#/problems">${o.errors} errors, ${o.warnings} warnings</a> in the policies.</p>` : "";
  main.innerHTML = `<h1>Tenants</h1>${problems}<div class="cards" id="tenants">${cards || '<p class="muted">No tenant loaded.</p>'}</div>
    <p class="muted">Read from ${h(o.origin)} at ${h(o.loaded_at.replace(/\.\d+Z$/, "Z"))}; the console shows the policies as they were then (restart it to read them again).</p>`;
}

// The units in U's subtree (pre-order: U and the units after it that are deeper).
function subtree(units, id) {
  const i = units.findIndex((u) => u.id === id);
  if (i < 0) return new Set();
  const out = new Set([id]);
  for (let j = i + 1; j < units.length && units[j].depth > units[i].depth; j++) out.add(units[j].id);
  return out;
}

// Lays out only the rows in view (plus some on either side), so a list of any length costs
// what a screenful costs: a 5,000-member tenant renders as fast as a 50-member one.
const ROW_PX = 30;
function virtualList(box, items, row) {
  const spacer = document.createElement("div");
  spacer.style.height = `${items.length * ROW_PX}px`;
  spacer.className = "spacer";
  const view = document.createElement("div");
  view.className = "window";
  spacer.appendChild(view);
  box.appendChild(spacer);
  let shown = "";
  const draw = () => {
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_PX) - 10);
    const last = Math.min(items.length, first + Math.ceil((box.clientHeight || 600) / ROW_PX) + 20);
    if (shown === `${first}-${last}`) return;
    shown = `${first}-${last}`;
    view.style.top = `${first * ROW_PX}px`;
    view.innerHTML = items.slice(first, last).map((it, k) => row(it, first + k)).join("");
  };
  box.addEventListener("scroll", () => requestAnimationFrame(draw), { passive: true });
  draw();
}

async function viewTenant(t, params) {
  setNav("tenants");
  const d = await api("tenant", { tenant: t }, true);
  const unit = params.get("unit") || "";
  const filter = params.get("q") || "";
  const units = [{ id: "", depth: -1, members: d.members.length }, ...d.units];
  const tree = units
    .map(
      (u) => `<li><a href="${link(["tenant", t], { unit: u.id, q: filter })}" style="padding-left:${12 + (u.depth + 1) * 14}px"
        ${u.id === unit ? 'aria-current="true"' : ""}><span>${u.id ? h(u.id) : "<em>all members</em>"}</span><span class="n">${u.members}</span></a></li>`
    )
    .join("");
  const inUnit = unit ? subtree(d.units, unit) : null;
  const needle = filter.toLowerCase();
  const shown = d.members.filter((m) => (!inUnit || m.units.some((u) => inUnit.has(u))) && (!needle || m.id.toLowerCase().includes(needle)));
  main.innerHTML = `${tenantTabs(t, "members")}<h1>${h(t)} <span class="muted">revision ${d.revision}</span></h1>
    <div class="split"><section aria-label="Unit tree"><h2>Units</h2><ul class="tree" id="units">${tree}</ul></section>
    <section aria-label="Members"><div class="toolbar"><h2 style="margin:0">Members${unit ? ` in ${h(unit)} and below` : ""}</h2>
    <label>Filter <input id="member-filter" type="search" value="${h(filter)}" placeholder="member id" autocomplete="off"></label>
    <span class="muted" id="member-count">${shown.length} of ${d.members.length}</span></div>
    <div class="mrow mhead" aria-hidden="true"><span>Member</span><span>Status</span><span>Units</span></div>
    <div class="members" id="members" role="table" aria-label="Members" aria-rowcount="${shown.length}" data-count="${shown.length}" tabindex="0"></div>
    </section></div>`;
  virtualList(document.getElementById("members"), shown, (m, i) =>
    `<div class="mrow" role="row" aria-rowindex="${i + 1}"><span role="cell"><a href="${link(["tenant", t, "member", m.id])}">${h(m.id)}</a></span>
    <span role="cell"><span class="badge ${m.status}">${m.status}</span></span><span role="cell" title="${h(m.units.join(", "))}">${h(m.units.join(", "))}</span></div>`
  );
  const input = document.getElementById("member-filter");
  let timer;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      history.replaceState(null, "", link(["tenant", t], { unit, q: input.value }));
      render().then(() => {
        const again = document.getElementById("member-filter");
        again.focus();
        again.setSelectionRange(again.value.length, again.value.length);
      });
    }, 150);
  });
}

const STATE_TEXT = { allowed: "✓ allowed", conditional: "◐ conditional", requestable: "? requestable", denied: "✕ denied by rule", none: "·" };

async function viewMember(t, id, params) {
  setNav("tenants");
  const now = params.get("now") || "";
  const m = await api("member", { tenant: t, member: id, now });
  const bindings = m.bindings
    .map(
      (b) => `<tr><td><code>${h(b.id)}</code>${b.everyone ? ' <span class="muted">(everyone)</span>' : ""}</td><td>${h(b.role)}</td>
      <td>${h(b.scope)}</td><td>${b.from ? h(b.from) : "—"}</td><td>${b.until ? h(b.until) : "—"}</td><td>${b.when ? "yes" : "—"}</td>
      <td><span class="badge ${b.window === "in force" ? "active" : b.window === "ended" ? "expired" : "later"}">${b.window}</span></td></tr>`
    )
    .join("");
  const attrs = m.attrs.map((a) => `${h(a.name)}: <code>${h(a.value)}</code>`).join(", ") || "—";
  main.innerHTML = `${tenantTabs(t, "")}<h1>${h(m.id)} <span class="badge ${m.status}" id="member-status">${m.status}</span></h1>
    <dl class="kv-row"><div><dt>Units</dt><dd>${h(m.units.join(", ") || "—")}</dd></div><div><dt>Attributes</dt><dd>${attrs}</dd></div>
    <div><dt>Expires</dt><dd>${h(m.expires || "never")}</dd></div>${m.why ? `<div><dt>Rejected</dt><dd>${h(m.why)}</dd></div>` : ""}
    <div><dt>As of</dt><dd><form id="as-of"><input name="now" value="${h(now)}" placeholder="now (RFC 3339 instant)" size="26" aria-label="As of instant"> <button>Show</button></form></dd></div></dl>
    <h2>Effective permissions</h2>${matrixHtml(m)}<div id="cell-explain" class="panel" hidden></div>
    <h2>Bindings</h2><div class="scroll"><table id="bindings"><thead><tr><th>Binding</th><th>Role</th><th>Scope</th><th>From</th><th>Until</th><th>Condition</th><th>Window</th></tr></thead>
    <tbody>${bindings || '<tr><td colspan="7" class="muted">No binding.</td></tr>'}</tbody></table></div>`;
  document.getElementById("as-of").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = link(["tenant", t, "member", id], { now: e.target.now.value.trim() });
  });
  wireMatrix(t, m);
}

function matrixHtml(m) {
  const x = m.matrix;
  if (x.error) return `<p class="error">${h(x.error)}</p>`;
  if (x.inactive) return `<p id="matrix" data-inactive="${h(x.inactive)}">The member may do nothing: <code>${h(x.inactive)}</code>.</p>`;
  if (!x.columns.length && !x.rows.some((r) => r.denied))
    return `<p id="matrix" class="muted">No binding grants this member anything.</p>`;
  const cols = x.columns.length ? x.columns : ["—"];
  const head = cols.map((c, j) => `<th class="scope" scope="col" title="${h(x.tips[j] || c)}">${h(c)}</th>`).join("");
  const rows = x.rows
    .map((r, i) => {
      const cells = (r.cells.length ? r.cells : [{ state: r.denied ? "denied" : "none", why: [] }])
        .map(
          (c, j) => `<td><button type="button" class="cell ${c.state}" data-row="${i}" data-col="${j}" aria-pressed="false"
          title="${h(c.why.join("\n") || "no grant")}" aria-label="${h(r.action)} in ${h(cols[j])}: ${c.state}">${STATE_TEXT[c.state]}</button></td>`
        )
        .join("");
      return `<tr><th scope="row"><code>${h(r.action)}</code></th>${cells}</tr>`;
    })
    .join("");
  const legend = Object.entries(STATE_TEXT)
    .map(([k, v]) => `<span class="cell ${k}">${v === "·" ? "· none" : v}</span>`)
    .join("");
  return `<div class="legend" aria-hidden="true">${legend}</div><p class="muted hint">Hover a cell for its grants; click it (or Enter) to explain; arrow keys move between cells.</p>
    <div class="scroll matrix"><table id="matrix"><thead><tr><th scope="col">Action</th>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

function wireMatrix(t, m) {
  const table = document.getElementById("matrix");
  if (!table || table.tagName !== "TABLE") return;
  const x = m.matrix;
  const panel = document.getElementById("cell-explain");
  table.addEventListener("click", (e) => {
    const b = e.target.closest("button.cell");
    if (!b) return;
    for (const p of table.querySelectorAll('[aria-pressed="true"]')) p.setAttribute("aria-pressed", "false");
    b.setAttribute("aria-pressed", "true");
    const r = x.rows[+b.dataset.row];
    const col = x.columns[+b.dataset.col] || "";
    const c = r.cells[+b.dataset.col] || { state: r.denied ? "denied" : "none", why: [] };
    const sim = { member: m.id, action: r.action, now: m.now };
    const unit = col.match(/^unit (.+)$/) || col.match(/^own units \(([^,)]+)/);
    if (unit) sim.unit = unit[1];
    const rel = col.match(/^relation (.+)$/);
    if (rel) sim.attrs = JSON.stringify({ [rel[1]]: m.id });
    panel.hidden = false;
    panel.innerHTML = `<strong><code>${h(r.action)}</code> in ${h(col || "any scope")}: ${h(c.state)}</strong>
      ${x.tips[+b.dataset.col] ? `<div class="muted">${h(x.tips[+b.dataset.col])}</div>` : ""}
      <ul>${(c.why.length ? c.why : ["no binding of the member grants it here"]).map((w) => `<li>${h(w)}</li>`).join("")}</ul>
      <p><a href="${link(["tenant", t, "simulate"], sim)}" id="simulate-cell">Simulate this request</a></p>`;
  });
  table.addEventListener("keydown", (e) => {
    const b = e.target.closest("button.cell");
    const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
    if (!b || !step) return;
    const next = table.querySelector(`button.cell[data-row="${+b.dataset.row + step[0]}"][data-col="${+b.dataset.col + step[1]}"]`);
    if (next) {
      e.preventDefault();
      next.focus();
    }
  });
}

const FIELDS = ["member", "action", "kind", "id", "unit", "attrs", "ctx", "ip", "now"];

function formHtml(d, p, withMember, submit) {
  const v = (k) => h(p.get(k) || "");
  const actions = d.actions.map((a) => `<option${a === p.get("action") ? " selected" : ""}>${h(a)}</option>`).join("");
  const members = withMember
    ? `<label>Member <input name="member" list="member-ids" value="${v("member")}" required autocomplete="off"></label>
       <datalist id="member-ids">${d.members.map((m) => `<option value="${h(m.id)}">`).join("")}</datalist>`
    : "";
  return `<form class="grid" id="query">${members}
    <label>Action <select name="action" required><option value="">choose…</option>${actions}</select></label>
    <label>Resource kind <input name="kind" value="${v("kind")}" placeholder="from the action"></label>
    <label>Resource id <input name="id" value="${v("id")}"></label>
    <label>Resource unit <input name="unit" list="unit-ids" value="${v("unit")}" autocomplete="off"></label>
    <datalist id="unit-ids">${d.units.map((u) => `<option value="${h(u.id)}">`).join("")}</datalist>
    <label>Client IP <input name="ip" value="${v("ip")}" placeholder="203.0.113.7"></label>
    <label>Instant <input name="now" value="${v("now")}" placeholder="now (RFC 3339)"></label>
    <label class="wide">Resource attributes (JSON) <textarea name="attrs" placeholder='{"assignee": "rep-1", "tags": ["vip"]}'>${v("attrs")}</textarea></label>
    <label class="wide">Context attributes (JSON) <textarea name="ctx" placeholder='{"active_conversations": 2}'>${v("ctx")}</textarea></label>
    <div><button class="primary" type="submit" id="run">${submit}</button></div></form>`;
}

function wireForm(t, view) {
  document.getElementById("query").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const params = {};
    for (const k of FIELDS) if (f.get(k)) params[k] = String(f.get(k)).trim();
    location.hash = link(["tenant", t, view], params);
  });
}

function queryParams(t, p) {
  const out = { tenant: t };
  for (const k of FIELDS) if (p.get(k)) out[k] = p.get(k);
  return out;
}

async function viewSimulate(t, p) {
  setNav("tenants");
  const d = await api("tenant", { tenant: t }, true);
  main.innerHTML = `${tenantTabs(t, "simulate")}<h1>Simulator</h1>${formHtml(d, p, true, "Decide")}<div id="result"></div>`;
  wireForm(t, "simulate");
  if (!p.get("member") || !p.get("action")) return;
  const r = await api("explain", queryParams(t, p));
  const dd = r.decision;
  const obligations = [
    dd.mask.length ? `mask <code>${h(dd.mask.join(", "))}</code>` : "",
    dd.review ? "hold for review" : "",
    dd.alert ? "raise an alert" : "",
    dd.requestable ? "the member may request it" : "",
  ].filter(Boolean);
  const steps = r.steps
    .map(
      (s) => `<tr data-step data-kind="${h(s.kind)}" data-id="${h(s.id)}" data-applies="${s.applies}" class="${s.applies ? "applies" : "skipped"}">
      <td>${h(s.kind)}</td><td><code>${h(s.id)}</code></td><td>${s.applies ? "applies" : "no"}</td><td class="why">${h(s.why)}</td></tr>`
    )
    .join("");
  document.getElementById("result").innerHTML = `<section class="decision ${dd.allowed ? "allow" : "deny"}" id="decision"
      data-allowed="${dd.allowed}" data-reason="${h(dd.reason)}" data-rule="${h(dd.rule || "")}" aria-label="Decision">
      <div class="verdict">${dd.allowed ? "Allow" : "Deny"} <code id="reason">${h(dd.reason)}</code></div>
      <dl class="kv">${dd.rule ? `<dt>Decided by</dt><dd><code id="rule">${h(dd.rule)}</code></dd>` : ""}
      <dt>Obligations</dt><dd id="obligations">${obligations.join("; ") || "none"}</dd>
      ${dd.message ? `<dt>Message</dt><dd>${h(dd.message)}</dd>` : ""}
      <dt>Valid until</dt><dd>${h(dd.valid_until || "no bound")}</dd><dt>At</dt><dd>${h(r.now)} (revision ${r.revision})</dd></dl></section>
    <h2>Explain</h2><div class="scroll"><table id="steps"><thead><tr><th>Step</th><th>Id</th><th>Applies</th><th>Why</th></tr></thead>
    <tbody>${steps || '<tr><td colspan="4" class="muted">No step.</td></tr>'}</tbody></table></div>
    <p><a href="${link(["tenant", t, "member", p.get("member")])}">Open member ${h(p.get("member"))}</a></p>`;
}

async function viewWho(t, p) {
  setNav("tenants");
  const d = await api("tenant", { tenant: t }, true);
  main.innerHTML = `${tenantTabs(t, "who")}<h1>Who can</h1>${formHtml(d, p, false, "List members")}<div id="result"></div>`;
  wireForm(t, "who");
  if (!p.get("action")) return;
  const r = await api("who", queryParams(t, p));
  const items = r.principals.map((m) => `<li><a href="${link(["tenant", t, "member", m])}">${h(m)}</a></li>`).join("");
  document.getElementById("result").innerHTML = `<h2 id="who-count">${r.principals.length}${r.more ? "+" : ""} members may do <code>${h(p.get("action"))}</code></h2>
    <ul class="plain columns" id="who">${items}</ul>${r.more ? '<p class="muted">The list stops at 10,000 members.</p>' : ""}`;
}

async function viewDiff() {
  setNav("diff");
  const d = await api("diff", {}, true);
  if (!d.available) {
    main.innerHTML = `<h1>Diff</h1><p class="muted" id="diff">${h(d.message)}</p>`;
    return;
  }
  const tenants = d.tenants
    .map((t) => {
      const members = t.members
        .map((m) => {
          const acts = m.actions
            .map(
              (a) => `<li><code>${h(a.action)}</code> ${a.gained ? '<span class="gain">gains</span>' : ""} ${a.lost ? '<span class="loss">loses</span>' : ""}
              <ul>${a.added.map((x) => `<li class="gain">+ ${h(x)}</li>`).join("")}${a.removed.map((x) => `<li class="loss">− ${h(x)}</li>`).join("")}
              ${a.reordered ? "<li>same grants in another order</li>" : ""}</ul></li>`
            )
            .join("");
          return `<li><a href="${link(["tenant", t.tenant, "member", m.member])}">${h(m.member)}</a>
            ${m.gained ? '<span class="badge allow">gains</span>' : ""} ${m.lost ? '<span class="badge deny">loses</span>' : ""}
            ${m.status ? `<span class="muted">${h(m.status)}</span>` : ""}<ul>${acts}</ul></li>`;
        })
        .join("");
      const notes = t.notes.map((n) => `<li>${h(n)}</li>`).join("");
      return `<section data-diff-tenant="${h(t.tenant)}"><h2>${h(t.tenant)}</h2>${notes ? `<ul>${notes}</ul>` : ""}<ul>${members || "<li class=muted>no member's access changes</li>"}</ul></section>`;
    })
    .join("");
  main.innerHTML = `<h1>Diff</h1><p class="muted">From ${h(d.base)} (old) to the shown policies (new).</p>
    <div id="diff">${tenants || '<p class="muted">No change of access.</p>'}</div>`;
}

async function viewProblems(p) {
  setNav("problems");
  const d = await api("problems", {}, true);
  const only = p.get("severity") || "";
  const rows = d.problems
    .filter((x) => !only || x.severity === only)
    .map(
      (x) => `<tr><td class="mono">${h(x.file)}:${x.line}:${x.col}</td><td class="sev-${x.severity}">${x.severity}</td>
      <td><code>${h(x.key)}</code></td><td>${h(x.message)}</td></tr>`
    )
    .join("");
  const tab = (s, label) => `<a href="${link(["problems"], { severity: s })}"${only === s ? ' aria-current="page"' : ""}>${label}</a>`;
  main.innerHTML = `<h1>Problems</h1><nav class="tabs" aria-label="Severity">${tab("", "All")}${tab("error", "Errors")}${tab("warning", "Warnings")}</nav>
    <div class="scroll"><table id="problems"><thead><tr><th>Where</th><th>Severity</th><th>Key</th><th>Message</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="4" class="muted">Nothing to report.</td></tr>'}</tbody></table></div>`;
}

async function start() {
  try {
    const o = await api("overview", {}, true);
    document.getElementById("origin").textContent = `${o.origin} · read ${o.loaded_at.replace(/\.\d+Z$/, "Z")}`;
    document.getElementById("problem-count").textContent = o.errors ? String(o.errors) : "";
  } catch (e) {
    main.innerHTML = `<p class="error" role="alert">${h(e.message)}</p>`;
  }
  window.addEventListener("hashchange", () => {
    render().then(() => main.focus({ preventScroll: true }));
  });
  await render();
}
start();
