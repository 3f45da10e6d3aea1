// The modelrouter dashboard. Reads only the gateway's public API: /api/v1 (admin token as a
// bearer header) and the event stream /api/v1/events, read with fetch() so that the token
// travels in the Authorization header (EventSource cannot send headers, and a token in the
// URL would end up in access logs and history). No library, no external asset.
"use strict";

const TOKEN_KEY = "modelrouter.token";
const ACTOR_KEY = "modelrouter.actor";
const HISTORY_SECONDS = 300;
const BUCKET_SECONDS = 5;
const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#64748b"];
const FINAL = new Set(["Succeeded", "RolledBack", "Failed"]);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  actor: sessionStorage.getItem(ACTOR_KEY) || "",
  models: [],
  routing: { revision: null, documents: {} },
  rollouts: [],
  figures: {},
  traffic: [],
  histories: {},
  rolloutVersions: {},
  formVersions: {},
  stream: null,
  retry: 1000,
  connected: false,
};

// ------------------------------------------------------------------ small helpers

function $(id) { return document.getElementById(id); }

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") setStyle(el, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// "a: b; c: d" through the CSSOM: the page's Content-Security-Policy refuses style attributes
function setStyle(el, text) {
  for (const part of text.split(";")) {
    const i = part.indexOf(":");
    if (i > 0) el.style.setProperty(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function fmt(v, digits = 1, unit = "") {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return `${Number(v).toFixed(digits)}${unit}`;
}
function pct(v, digits = 1) { return v === null || v === undefined ? "–" : fmt(100 * v, digits, "%"); }
function when(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function slug(...parts) { return parts.join("-").replace(/[^A-Za-z0-9_-]/g, "_"); }

function colorOf(model, version) {
  const m = state.models.find((x) => x.name === model);
  const i = m ? m.versions.findIndex((v) => v.name === version) : -1;
  return PALETTE[(i < 0 ? 7 : i) % PALETTE.length];
}

function toast(text, bad = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = bad ? "toast show bad" : "toast show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast"; }, 5000);
}

function showMessage(text) {
  const m = $("message");
  m.textContent = text;
  m.hidden = !text;
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.actor) headers["x-actor"] = state.actor;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let doc = null;
  try { doc = await res.json(); } catch { doc = null; }
  if (!res.ok) {
    const why = (doc && doc.error) || `${res.status} ${res.statusText}`;
    if (res.status === 401) refused(why);
    throw new ApiError(res.status, why);
  }
  return doc;
}

function refused(why) {
  stopStream();
  state.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  setConnected(false, "not connected");
  $("app").hidden = true;
  $("nav").hidden = true;
  $("token-form").hidden = false;
  $("signed-in").hidden = true;
  showMessage(`The gateway refused the admin token: ${why}. Type the token again.`);
  $("token").focus();
}

// ------------------------------------------------------------------ sign in

async function signIn() {
  showMessage("");
  try {
    await api("GET", "/api/v1/models");
  } catch (e) {
    if (e.status !== 401) showMessage(`Cannot reach the admin API: ${e.message}`);
    return;
  }
  $("token-form").hidden = true;
  $("signed-in").hidden = false;
  $("whoami").textContent = `signed in as ${state.actor || "admin"}`;
  $("app").hidden = false;
  $("nav").hidden = false;
  startStream();
  loadAudit();
  loadChanges();
}

function setupSignIn() {
  $("actor").value = state.actor;
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    state.actor = $("actor").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    sessionStorage.setItem(ACTOR_KEY, state.actor);
    $("token").value = "";
    signIn();
  });
  $("signout").addEventListener("click", () => {
    refused("you asked to forget it");
    showMessage("");
  });
  if (state.token) signIn();
}

// ------------------------------------------------------------------ the event stream

function setConnected(ok, text) {
  state.connected = ok;
  const c = $("conn");
  c.textContent = text;
  c.className = ok ? "conn on" : "conn off";
}

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearTimeout(state.retryTimer);
}

async function startStream() {
  stopStream();
  const ctrl = new AbortController();
  state.stream = ctrl;
  let res;
  try {
    res = await fetch("/api/v1/events", { headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" }, signal: ctrl.signal });
  } catch (e) {
    return reconnect(ctrl, "gateway unreachable");
  }
  if (res.status === 401) {
    let why = "invalid token";
    try { why = (await res.json()).error; } catch { /* keep the default */ }
    return refused(why);
  }
  if (!res.ok) return reconnect(ctrl, `event stream refused (${res.status})`);
  setConnected(true, "live");
  state.retry = 1000;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        dispatch(block);
      }
    }
  } catch (e) {
    /* the connection broke: reconnect below */
  }
  reconnect(ctrl, "connection lost");
}

function reconnect(ctrl, why) {
  if (state.stream !== ctrl) return; // replaced or stopped on purpose
  setConnected(false, `${why}; reconnecting…`);
  state.retryTimer = setTimeout(() => { if (state.stream === ctrl) startStream(); }, state.retry);
  state.retry = Math.min(state.retry * 2, 10000);
}

function dispatch(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  const doc = JSON.parse(data.join("\n"));
  if (name === "hello") {
    state.traffic = (doc.trafficHistory || []).slice(-HISTORY_SECONDS);
    applyModels(doc.models);
    applyRouting(doc.routing);
    applyFigures(doc.figures);
    applyRollouts(doc.rollouts);
    renderTraffic();
  } else if (name === "traffic") {
    state.traffic.push(doc);
    const cutoff = doc.t - HISTORY_SECONDS;
    while (state.traffic.length && state.traffic[0].t < cutoff) state.traffic.shift();
    renderTraffic();
  } else if (name === "models") applyModels(doc);
  else if (name === "routing") applyRouting(doc);
  else if (name === "rollouts") applyRollouts(doc);
  else if (name === "figures") applyFigures(doc);
}

// ------------------------------------------------------------------ models and versions

function applyModels(models) {
  state.models = models || [];
  const sel = $("f-model");
  const chosen = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "any"), ...state.models.map((m) => h("option", { value: m.name }, m.name)));
  sel.value = chosen;
  renderModels();
}

function renderModels() {
  const box = $("models");
  box.replaceChildren(...state.models.map((m) => h("article", { class: "card", id: slug("model", m.name) },
    h("h3", {}, m.name, " ", h("small", {}, `routing v${m.routingVersion}`)),
    h("div", { class: "scroll" }, h("table", { class: "versions" },
      h("thead", {}, h("tr", {}, ["version", "state", "role", "weights", "source", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, m.versions.map((v) => h("tr", { "data-version": v.name },
        h("th", { scope: "row" }, h("span", { class: "dot", style: `background:${colorOf(m.name, v.name)}` }), v.name),
        h("td", {}, h("span", { class: `badge st-${v.state.toLowerCase()}` }, v.state),
          v.error ? h("div", { class: "error", role: "note" }, v.error) : null),
        h("td", {}, h("span", { class: `badge role-${v.role}` }, v.role),
          v.mirroredBy.length ? h("div", { class: "muted" }, `mirror of ${v.mirroredBy.join(", ")}`) : null),
        h("td", {}, Object.entries(v.weights).map(([r, w]) => h("div", {}, `${r}: ${w}%`))),
        h("td", { class: "source" }, h("code", {}, v.source), h("div", { class: "muted" }, v.format)),
        h("td", { class: "actions" },
          v.state === "READY" || v.state === "LOADING"
            ? h("button", { type: "button", class: "quiet", "aria-label": `Unload ${m.name} ${v.name}`, onclick: () => loadVersion(m.name, v.name, false) }, "Unload")
            : h("button", { type: "button", class: "quiet", "aria-label": `Load ${m.name} ${v.name}`, onclick: () => loadVersion(m.name, v.name, true) }, "Load")),
      ))),
    )),
  )));
}

async function loadVersion(model, version, load) {
  const verb = load ? "load" : "unload";
  try {
    const r = await api("POST", `/api/v1/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/${verb}`);
    toast(`${model} ${version}: ${r.state}${r.reason ? ` (${r.reason})` : ""}`, r.state === "FAILED");
  } catch (e) {
    toast(`${verb} ${model} ${version} failed: ${e.message}`, true);
  }
}

// ------------------------------------------------------------------ traffic and figures

function applyRouting(routing) {
  const before = state.routing.revision;
  state.routing = routing || { revision: null, documents: {} };
  renderTrafficLayout();
  if (before !== null && before !== state.routing.revision) loadChanges();
}

function applyFigures(figures) {
  state.figures = figures || {};
  renderFigures();
}

function rulesOf(model) {
  const doc = state.routing.documents[model];
  return doc ? doc.http.map((r, i) => ({ ...r, name: r.name || `rule-${i}` })) : [];
}

// Requests counted under no rule: pinned calls, and those no rule matched (the default version)
function unruled(model) {
  return !rulesOf(model).length || state.traffic.some((x) => x.counts && x.counts[model] && x.counts[model][""]);
}

function chartRules(model) {
  return [...rulesOf(model), ...(unruled(model) ? [{ name: "", route: [], unruled: true }] : [])];
}

function renderTrafficLayout() {
  const box = $("traffic");
  for (const m of state.models) {
    const id = slug("traffic", m.name);
    let card = $(id);
    if (!card) {
      card = h("article", { class: "card wide", id },
        h("h3", {}, m.name),
        h("div", { class: "rules", id: slug("rules", m.name) }),
        h("h4", {}, "Per version, last minute"),
        h("div", { class: "scroll", id: slug("figures", m.name) }));
      box.append(card);
    }
    const doc = state.routing.documents[m.name];
    if (!doc) continue;
    const rulesBox = $(slug("rules", m.name));
    const seen = new Set();
    for (const rule of chartRules(m.name)) {
      const rid = slug("rule", m.name, rule.name);
      seen.add(rid);
      let rc = $(rid);
      if (!rc) {
        rc = h("div", { class: "rule", id: rid, "data-rule": rule.name },
          h("h4", {}, rule.unruled ? "no rule (default version, pinned calls)" : `rule ${rule.name}`),
          h("div", { class: "chart", id: `${rid}-chart`, role: "img", "aria-label": `Traffic share of rule ${rule.name}` }),
          h("div", { class: "legend", id: `${rid}-legend` }),
          h("div", { class: "weights", id: `${rid}-form` }));
        rulesBox.append(rc);
      }
      if (rule.unruled) continue;
      const key = `${m.name}/${rule.name}`;
      const fingerprint = JSON.stringify([doc.version, rule.route, rule.mirror]);
      if (state.formVersions[key] !== fingerprint) {
        state.formVersions[key] = fingerprint;
        $(`${rid}-form`).replaceChildren(weightsForm(m.name, rule, doc));
      }
    }
    for (const old of [...rulesBox.children]) if (!seen.has(old.id)) old.remove();
  }
  renderTraffic();
}

function weightsForm(model, rule, doc) {
  const route = rule.route || [];
  const by = h("span", { class: "muted" }, `routing v${doc.version} by ${doc.actor || "config"} · ${when(doc.updatedAt)}`);
  if (route.length < 2) {
    return h("p", { class: "muted" }, `All of its traffic goes to ${route.map((d) => d.destination).join("")}. `, by);
  }
  const inputs = route.map((d) => {
    const id = slug("w", model, rule.name, d.destination);
    return h("label", { for: id, class: "w" },
      h("span", { class: "dot", style: `background:${colorOf(model, d.destination)}` }), d.destination,
      h("input", { id, type: "number", min: "0", max: "100", step: "1", value: d.weight ?? 100, "data-destination": d.destination, "aria-label": `Weight of ${d.destination} in rule ${rule.name}` }));
  });
  const reasonId = slug("reason", model, rule.name);
  const mirror = rule.mirror ? h("span", { class: "muted" }, `mirror → ${rule.mirror.destination} ${rule.mirrorPercentage ? rule.mirrorPercentage.value : 100}%`) : null;
  const form = h("form", { class: "weights-form", "aria-label": `Set the weights of rule ${rule.name}` },
    ...inputs,
    h("label", { for: reasonId, class: "reason" }, "Reason",
      h("input", { id: reasonId, type: "text", required: true, placeholder: "why (in the audit log)", "aria-label": `Reason for the new weights of rule ${rule.name}` })),
    h("button", { type: "submit" }, "Set weights"),
    mirror,
    by);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); setWeights(model, rule.name, form); });
  return form;
}

async function setWeights(model, ruleName, form) {
  const weights = {};
  for (const input of form.querySelectorAll("input[data-destination]")) weights[input.dataset.destination] = Number(input.value);
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  if (Object.keys(weights).length > 1 && total !== 100) {
    toast(`The weights of rule ${ruleName} add up to ${total}, not 100`, true);
    return;
  }
  const reason = form.querySelector("input[type=text]").value.trim();
  try {
    const doc = await api("GET", `/api/v1/models/${encodeURIComponent(model)}/routing`);
    const rule = doc.http.find((r, i) => (r.name || `rule-${i}`) === ruleName);
    if (!rule) throw new Error(`rule ${ruleName} is gone`);
    for (const d of rule.route) if (d.destination in weights) d.weight = weights[d.destination];
    const put = await api("PUT", `/api/v1/models/${encodeURIComponent(model)}/routing`, { http: doc.http, reason, expectedVersion: doc.version });
    toast(`Rule ${ruleName} of ${model}: ${Object.entries(weights).map(([v, w]) => `${v} ${w}%`).join(", ")} (routing v${put.version})`);
  } catch (e) {
    toast(`Setting the weights of ${ruleName} failed: ${e.message}`, true);
  }
}

function shares(model, rule) {
  // 5 s buckets over the last 5 minutes: requests per version, then shares
  const now = state.traffic.length ? state.traffic[state.traffic.length - 1].t : Date.now() / 1000;
  const start = now - HISTORY_SECONDS;
  const n = HISTORY_SECONDS / BUCKET_SECONDS;
  const buckets = Array.from({ length: n }, () => ({}));
  for (const sample of state.traffic) {
    const counts = ((sample.counts || {})[model] || {})[rule];
    if (!counts || sample.t <= start) continue;
    const i = Math.min(n - 1, Math.floor((sample.t - start) / BUCKET_SECONDS));
    for (const [v, c] of Object.entries(counts)) buckets[i][v] = (buckets[i][v] || 0) + c;
  }
  return { buckets, start, now };
}

function renderTraffic() {
  for (const m of state.models) {
    const versions = m.versions.map((v) => v.name);
    for (const rule of chartRules(m.name)) {
      const rid = slug("rule", m.name, rule.name);
      const chart = $(`${rid}-chart`);
      if (!chart) {
        if (state.routing.documents[m.name]) return renderTrafficLayout(); // a new chart to place
        continue;
      }
      const { buckets } = shares(m.name, rule.name);
      chart.replaceChildren(areaChart(m.name, versions, buckets));
      const recent = {};
      let total = 0;
      for (const b of buckets.slice(-6)) for (const [v, c] of Object.entries(b)) { recent[v] = (recent[v] || 0) + c; total += c; }
      const configured = Object.fromEntries((rule.route || []).map((d) => [d.destination, d.weight ?? 100]));
      const shown = versions.filter((v) => v in configured || recent[v]);
      $(`${rid}-legend`).replaceChildren(...shown.map((v) => h("span", { class: "share", "data-version": v },
        h("span", { class: "dot", style: `background:${colorOf(m.name, v)}` }),
        h("b", {}, v), " ", h("span", { class: "live-share" }, total ? pct((recent[v] || 0) / total, 0) : "–"),
        h("span", { class: "muted" }, rule.unruled ? ` of ${total} req/30 s` : ` of ${total} req/30 s · weight ${configured[v] ?? 0}%`))));
    }
  }
}

function areaChart(model, versions, buckets) {
  // one stacked column per 5 s bucket (no line drawn across a gap with no traffic); shapes in
  // a stretched SVG, the words beside it in HTML so they keep their proportions
  const W = 600, H = 140, n = buckets.length, dx = W / n;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "area", preserveAspectRatio: "none", "aria-hidden": "true" });
  for (const y of [0.25, 0.5, 0.75]) svg.append(s("line", { x1: 0, x2: W, y1: H - y * H, y2: H - y * H, class: "grid" }));
  let any = false;
  buckets.forEach((b, i) => {
    const total = Object.values(b).reduce((a, c) => a + c, 0);
    if (!total) return;
    any = true;
    let y = H;
    for (const v of versions) {
      const c = b[v] || 0;
      if (!c) continue;
      const height = (c / total) * H;
      y -= height;
      svg.append(s("rect", { x: (i * dx).toFixed(2), y: y.toFixed(2), width: (dx + 0.3).toFixed(2), height: height.toFixed(2), fill: colorOf(model, v), "data-version": v }));
    }
  });
  const empty = any ? null : h("div", { class: "empty" }, "no traffic in the last 5 minutes");
  return h("div", { class: "plot" }, svg, empty,
    h("div", { class: "axis" }, h("span", {}, "5 min ago"), h("span", {}, "now")));
}

function renderFigures() {
  for (const m of state.models) {
    const box = $(slug("figures", m.name));
    if (!box) continue;
    const fig = state.figures[m.name] || {};
    box.replaceChildren(h("table", { class: "figures" },
      h("thead", {}, h("tr", {}, ["version", "requests", "error rate", "p50", "p99", "accuracy", "shadow agreement"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, m.versions.map((v) => {
        const f = fig[v.name] || {};
        return h("tr", { "data-version": v.name },
          h("th", { scope: "row" }, h("span", { class: "dot", style: `background:${colorOf(m.name, v.name)}` }), v.name),
          h("td", { class: "num requests" }, f.requests ?? 0),
          h("td", { class: `num ${f.errorRate > 0.01 ? "bad" : ""}` }, pct(f.errorRate, 2)),
          h("td", { class: "num" }, fmt(f.latencyP50Ms, 2, " ms")),
          h("td", { class: "num" }, fmt(f.latencyP99Ms, 2, " ms")),
          h("td", { class: "num" }, f.feedback ? `${pct(f.accuracy)} (${f.feedback})` : "–"),
          h("td", { class: "num" }, f.shadowCompared ? `${pct(f.shadowAgreement)} (${f.shadowCompared})` : "–"));
      }))));
  }
}

// ------------------------------------------------------------------ rollouts

function applyRollouts(rollouts) {
  state.rollouts = rollouts || [];
  renderRollouts();
  for (const r of state.rollouts) {
    if (state.rolloutVersions[r.name] !== r.version) {
      state.rolloutVersions[r.name] = r.version;
      loadHistory(r.name);
    }
  }
}

async function loadHistory(name) {
  try {
    const doc = await api("GET", `/api/v1/rollouts/${encodeURIComponent(name)}?limit=100`);
    state.histories[name] = doc.history || [];
    renderRollouts();
  } catch (e) {
    toast(`Rollout ${name}: cannot read its history: ${e.message}`, true);
  }
}

async function rolloutCommand(name, action) {
  if ((action === "abort" || action === "promote") && !window.confirm(`${action} rollout ${name}?`)) return;
  try {
    const r = await api("POST", `/api/v1/rollouts/${encodeURIComponent(name)}/${action}`);
    toast(`Rollout ${name}: ${action} → ${r.phase}`);
  } catch (e) {
    toast(`Rollout ${name}: ${action} failed: ${e.message}`, true);
  }
}

function renderRollouts() {
  const box = $("rollouts");
  if (!state.rollouts.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No rollouts in the config."));
    return;
  }
  box.replaceChildren(...state.rollouts.map((r) => {
    const final = FINAL.has(r.phase);
    const history = state.histories[r.name] || [];
    const buttons = [
      ["pause", "Pause", final || r.phase === "Paused"],
      ["resume", "Resume", r.phase !== "Paused"],
      ["promote", "Promote", final],
      ["abort", "Abort", final],
    ].map(([action, label, disabled]) => h("button", { type: "button", class: action === "abort" ? "danger" : "", disabled, "aria-label": `${label} rollout ${r.name}`, onclick: () => rolloutCommand(r.name, action) }, label));
    // one response, one read: the live weights and the rollout's own, as the status paired them
    const w = r.weights || {};
    const own = r.rolloutWeights || w;
    const differs = Object.keys(own).some((v) => (own[v] ?? 0) !== (w[v] ?? 0));
    return h("article", { class: "card wide rollout", id: slug("rollout", r.name), "data-phase": r.phase },
      h("div", { class: "rollout-main" },
        h("h3", {}, r.name, " ", h("span", { class: `badge phase-${r.phase.toLowerCase()}`, "aria-label": `phase ${r.phase}` }, r.phase)),
        h("p", { class: "muted" }, `${r.strategy} of ${r.model}, rule ${r.rule}: ${r.primary} → ${r.canary} · checks passed ${r.iterations}, failed ${r.failedChecks}${r.lastCheck ? ` · last check ${when(r.lastCheck)}` : ""}${r.pendingCommand ? ` · pending ${r.pendingCommand.action}` : ""}`),
        h("div", { class: "split", role: "img", "aria-label": `live weights ${Object.entries(w).map(([v, x]) => `${v} ${x}%`).join(", ")}` },
          Object.entries(w).filter(([, x]) => x > 0).map(([v, x]) => h("span", { style: `width:${x}%;background:${colorOf(r.model, v)}` }, `${v} ${x}%`))),
        differs ? h("p", { class: "note" }, `The live rule differs from the rollout's own weights (${Object.entries(own).map(([v, x]) => `${v} ${x}%`).join(", ")}): someone else changed rule ${r.rule}.`) : null,
        r.message ? h("p", { class: "message-line" }, r.message) : null,
        h("div", { class: "buttons", role: "group", "aria-label": `Commands for rollout ${r.name}` }, buttons),
        r.strategy === "abtest" ? abResult(r, history) : null,
        r.strategy === "bandit" ? banditChart(r, history) : null),
      h("div", { class: "rollout-steps" }, timeline(history)));
  }));
}

function abResult(r, history) {
  const step = history.find((x) => x.figures && x.figures.test);
  const t = (r.result && r.result.effect !== undefined ? r.result : null) || (step ? step.figures.test : null);
  if (!t) return h("p", { class: "muted" }, "A/B test: not enough data yet.");
  const decision = r.result && "winner" in r.result
    ? (r.result.winner ? `${r.result.winner} wins` : "no difference")
    : (t.significant ? "significant" : "no decision yet");
  return h("dl", { class: "ab" },
    h("dt", {}, "effect"), h("dd", {}, t.effect === undefined ? "–" : fmt(t.effect, 4)),
    h("dt", {}, "95% interval"), h("dd", {}, t.ciLow === undefined ? "–" : `[${fmt(t.ciLow, 4)}, ${fmt(t.ciHigh, 4)}]`),
    h("dt", {}, "p-value"), h("dd", {}, t.pValue === undefined ? "–" : Number(t.pValue).toPrecision(3)),
    h("dt", {}, "decision"), h("dd", { class: "decision" }, decision),
    step && step.figures.test.primary ? [
      h("dt", {}, `${r.primary} (primary)`), h("dd", {}, `${fmt(step.figures.test.primary.rate, 3)} of ${step.figures.test.primary.trials}`),
      h("dt", {}, `${r.canary} (canary)`), h("dd", {}, `${fmt(step.figures.test.canary.rate, 3)} of ${step.figures.test.canary.trials}`),
    ] : null);
}

function banditChart(r, history) {
  const points = history.filter((x) => x.weights && x.time).slice().reverse();
  if (points.length < 2) return h("p", { class: "muted" }, "Bandit: arm weights appear after two steps.");
  const W = 600, H = 100, t0 = points[0].time, t1 = points[points.length - 1].time || t0 + 1;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "lines", preserveAspectRatio: "none", role: "img", "aria-label": "bandit arm weights over time" });
  for (const v of [r.primary, r.canary]) {
    const pts = points.map((p) => `${((p.time - t0) / (t1 - t0 || 1) * W).toFixed(1)},${(H - (p.weights[v] || 0) / 100 * H).toFixed(1)}`);
    svg.append(s("polyline", { points: pts.join(" "), stroke: colorOf(r.model, v), fill: "none", "stroke-width": "2" }));
  }
  const res = r.result || {};
  const best = res.probabilityBest || {};
  const legend = h("div", { class: "legend" }, [r.primary, r.canary].map((v) => h("span", { class: "share", "data-version": v },
    h("span", { class: "dot", style: `background:${colorOf(r.model, v)}` }), h("b", {}, v), " ",
    h("span", { class: "live-share" }, `${(r.weights || {})[v] ?? 0}%`),
    h("span", { class: "muted" }, ` · P(best) ${best[v] === undefined ? "–" : Number(best[v]).toFixed(3)} · ${res.metric || "reward"} ${res.rates && res.rates[v] !== null && res.rates[v] !== undefined ? Number(res.rates[v]).toFixed(3) : "–"} (${(res.trials || {})[v] ?? 0})`))));
  return h("div", { class: "bandit" }, h("h4", {}, "Arm weights over time"), svg,
    h("div", { class: "axis" }, h("span", {}, when(t0)), h("span", {}, when(t1))), legend);
}

function figuresLine(x) {
  const f = x.figures || {};
  const rate = (p) => (p && p.rate !== null && p.rate !== undefined ? `${Number(p.rate).toFixed(3)} of ${p.trials}` : "–");
  if (f.test) return h("div", { class: "muted" }, `${f.test.metric}: primary ${rate(f.test.primary)}, canary ${rate(f.test.canary)}`);
  if (f.bandit) {
    const b = f.bandit;
    return h("div", { class: "muted" }, `P(best): ${Object.entries(b.probabilityBest || {}).map(([v, p]) => `${v} ${Number(p).toFixed(3)}`).join(", ")} · ${b.metric}: ${Object.entries(b.rates || {}).map(([v, r]) => `${v} ${r === null ? "–" : Number(r).toFixed(3)} (${(b.trials || {})[v]})`).join(", ")}`);
  }
  return null;
}

function timeline(history) {
  if (!history.length) return h("p", { class: "muted" }, "No steps yet.");
  return h("details", { class: "timeline", open: true },
    h("summary", {}, `Timeline (${history.length} steps, newest first)`),
    h("ol", {}, history.map((x) => h("li", { class: `step act-${x.action}` },
      h("div", { class: "step-head" },
        h("time", {}, when(x.time)), " ", h("b", {}, x.action), " ",
        x.phase ? h("span", { class: `badge phase-${String(x.phase).toLowerCase()}` }, x.phase) : null, " ",
        x.weights ? h("span", { class: "muted" }, Object.entries(x.weights).map(([v, w]) => `${v} ${w}%`).join(" / ")) : null,
        x.actor ? h("span", { class: "muted" }, ` · ${x.actor}`) : null),
      h("div", {}, x.reason || ""),
      figuresLine(x),
      x.checks && x.checks.length ? h("div", { class: "scroll" }, h("table", { class: "checks" },
        h("thead", {}, h("tr", {}, ["check", "value", "canary", "primary", "range", "samples", "verdict"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, x.checks.map((c) => h("tr", {},
          h("td", {}, c.name), h("td", { class: "num" }, fmt(c.value, 3)), h("td", { class: "num" }, fmt(c.canary, 3)),
          h("td", { class: "num" }, fmt(c.primary, 3)),
          h("td", {}, `${c.min ?? "−∞"} … ${c.max ?? "∞"}`), h("td", { class: "num" }, c.samples ?? "–"),
          h("td", { class: c.passed === false ? "bad" : c.passed ? "good" : "muted", title: c.reason }, c.passed === null ? "not counted" : c.passed ? "pass" : "fail")))))) : null))));
}

// ------------------------------------------------------------------ audit log and changes

async function loadAudit() {
  const form = $("audit-form");
  const q = new URLSearchParams({ order: "desc" });
  for (const [k, v] of new FormData(form).entries()) if (k !== "follow" && String(v).trim()) q.set(k, String(v).trim());
  const box = $("audit");
  try {
    const doc = await api("GET", `/api/v1/audit?${q}`);
    box.replaceChildren(auditTable(doc.records));
  } catch (e) {
    box.replaceChildren(h("p", { class: "error", role: "alert" }, `The audit query was refused: ${e.message}`));
  }
}

function summary(r) {
  if (r.kind === "decision") return `${r.status ?? ""} in ${fmt(r.latency_ms, 2, " ms")}${r.bucket !== null && r.bucket !== undefined ? ` · bucket ${r.bucket}` : ""}${r.shadows && r.shadows.length ? ` · shadow ${r.shadows.join(", ")}` : ""}`;
  if (r.kind === "change") return `${r.actor}: ${r.reason || r.action}`;
  if (r.kind === "rollout") return `${r.rollout}: ${r.action} (${r.reason || ""})`;
  return `${r.actor || ""} ${r.action || ""} ${r.reason || ""}`.trim();
}

function auditTable(records) {
  if (!records.length) return h("p", { class: "muted" }, "No record matches.");
  return h("table", { class: "audit" },
    h("thead", {}, h("tr", {}, ["time", "kind", "model", "rule", "version", "what", "request"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, records.map((r) => h("tr", { "data-kind": r.kind },
      h("td", {}, when(r.time)), h("td", {}, r.kind), h("td", {}, r.model || ""), h("td", {}, r.rule || ""),
      h("td", {}, r.version || ""), h("td", {}, summary(r)),
      h("td", {}, r.request_id ? h("button", { type: "button", class: "quiet", "aria-label": `Explain request ${r.request_id}`, onclick: () => explainRequest(r.request_id) }, "explain") : "")))));
}

async function explainRequest(id) {
  $("explain-id").value = id;
  const box = $("explanation");
  box.hidden = false;
  try {
    const doc = await api("GET", `/api/v1/decisions/${encodeURIComponent(id)}`);
    box.replaceChildren(h("h4", {}, `Request ${id}`), h("p", { class: "words" }, doc.explanation));
  } catch (e) {
    box.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

function ruleDiff(before, after) {
  const name = (r, i) => r.name || `rule-${i}`;
  const old = Object.fromEntries(((before && before.http) || []).map((r, i) => [name(r, i), r]));
  const lines = [];
  ((after && after.http) || []).forEach((r, i) => {
    const n = name(r, i);
    const b = old[n];
    delete old[n];
    const show = (x) => (x.route || []).map((d) => `${d.destination} ${d.weight ?? 100}%`).join(", ");
    if (!b) lines.push(`${n}: ${before ? "added" : "set"} (${show(r)})`);
    else if (JSON.stringify(b) !== JSON.stringify(r)) lines.push(show(b) !== show(r) ? `${n}: ${show(b)} → ${show(r)}` : `${n}: changed`);
  });
  for (const n of Object.keys(old)) lines.push(`${n}: removed`);
  if (!lines.length) return [before ? "no rule changed" : "no rules (the default version answers)"];
  return lines;
}

async function loadChanges() {
  const box = $("changes");
  try {
    const doc = await api("GET", "/api/v1/audit?kind=change&order=desc&limit=30");
    if (!doc.records.length) { box.replaceChildren(h("p", { class: "muted" }, "No routing change yet.")); return; }
    box.replaceChildren(h("table", { class: "changes" },
      h("thead", {}, h("tr", {}, ["time", "who", "model", "routing", "rules", "reason"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, doc.records.map((r) => h("tr", {},
        h("td", {}, when(r.time)), h("td", {}, h("b", {}, r.actor)), h("td", {}, r.model),
        h("td", {}, `v${r.previous_table_version ?? 0} → v${r.table_version}`),
        h("td", {}, ruleDiff(r.before, r.after).map((l) => h("div", {}, l))),
        h("td", {}, r.reason || "–"))))));
  } catch (e) {
    box.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

function setupAudit() {
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(); });
  // "follow": the query runs again every 5 s, unless the user is typing in the filters
  setInterval(() => {
    const typing = $("audit-form").contains(document.activeElement) && document.activeElement.id !== "f-follow";
    if ($("f-follow").checked && !$("app").hidden && !typing) loadAudit();
  }, 5000);
  $("explain-form").addEventListener("submit", (ev) => { ev.preventDefault(); explainRequest($("explain-id").value.trim()); });
}

document.addEventListener("DOMContentLoaded", () => {
  setupAudit();
  setupSignIn();
});
