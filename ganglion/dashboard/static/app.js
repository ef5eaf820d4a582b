// The ganglion dashboard page: server-sent events in, tables and uPlot charts out.
// Events (docs/dashboard.md): "snapshot" (everything, on connect), "readings" (a batch
// of new readings), "status" (map, nodes, counters, types). No build step, no CDN.

const SEP = "\u0000";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"];
const REDRAW_MS = 250;

const state = {
  ring: 1200,          // readings kept per series (the server says how many)
  epoch: null,         // the server run we are connected to
  history: false,      // the server has a log
  node: "",
  latest: new Map(),   // series key -> last reading
  series: new Map(),   // series key -> {type, node, sensor, t: [], f: {field: []}}
  types: {},           // type -> {group, fields: {field: unit}}
  map: {},
  nodes: [],
  names: {},           // node id -> name
  stats: {types: {}, streams: []},
  clockOffsetMs: 0,    // server clock - browser clock
  mode: "live",        // "live" or a history range
  dirty: new Set(),    // types whose table/plots need redrawing
  charts: new Map(),   // "type|field" -> {u, keys, el}
  errors: [],
};

const $ = (sel) => document.querySelector(sel);
const keyOf = (r) => r.type + SEP + r.node + SEP + r.sensor;
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const nodeName = (id) => state.names[id] || id.slice(0, 8);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

function fmtValue(v) {
  if (!isNum(v)) return esc(JSON.stringify(v));
  return Number.isInteger(v) ? String(v) : (Math.abs(v) >= 1000 ? v.toFixed(1) : v.toPrecision(4).replace(/\.?0+$/, ""));
}

function fmtAge(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

// -- readings in --------------------------------------------------------------------

function seriesFor(type, node, sensor) {
  const key = type + SEP + node + SEP + sensor;
  let s = state.series.get(key);
  if (!s) {
    s = {type, node, sensor, t: [], f: {}};
    state.series.set(key, s);
  }
  return s;
}

function pushPoint(s, tSec, fields) {
  if (s.t.length && tSec < s.t[s.t.length - 1]) return;  // already have it (a reconnect)
  const n = s.t.length;
  s.t.push(tSec);
  for (const [f, v] of Object.entries(fields)) {
    if (!isNum(v)) continue;
    if (!s.f[f]) s.f[f] = new Array(n).fill(null);
    s.f[f].push(v);
  }
  for (const arr of Object.values(s.f)) if (arr.length < s.t.length) arr.push(null);
  if (s.t.length > state.ring) {
    const cut = s.t.length - state.ring;
    s.t.splice(0, cut);
    for (const arr of Object.values(s.f)) arr.splice(0, cut);
  }
}

function takeReading(r) {
  const key = keyOf(r);
  const old = state.latest.get(key);
  if (!old || r.received_ns >= old.received_ns) state.latest.set(key, r);
  pushPoint(seriesFor(r.type, r.node, r.sensor), r.received_ns / 1e9, r.data);
  state.dirty.add(r.type);
}

function takeStatus(st) {
  state.map = st.map;
  state.nodes = st.nodes;
  for (const n of st.nodes) state.names[n.id] = n.name;
  state.stats = st.stats;
  for (const [t, info] of Object.entries(st.types)) {
    const before = JSON.stringify(state.types[t]);
    state.types[t] = info;
    if (before !== JSON.stringify(info)) state.dirty.add(t);
  }
  if (st.now_ns) state.clockOffsetMs = st.now_ns / 1e6 - Date.now();
  renderSide();
}

function takeSnapshot(snap) {
  state.epoch = snap.epoch;
  state.ring = snap.ring;
  state.history = snap.history;
  state.node = snap.node;
  $("#node-name").textContent = "· " + snap.node + " · " + snap.version;
  for (const btn of document.querySelectorAll("nav button.history")) {
    btn.disabled = !snap.history;
    btn.title = snap.history ? "" : "no log: start the dashboard with --db, or run the node's log plugin";
  }
  takeStatus(snap);
  for (const [type, node, sensor, points] of snap.window) {
    const s = seriesFor(type, node, sensor);
    for (const [tMs, fields] of points) pushPoint(s, tMs / 1000, fields);
    state.dirty.add(type);
  }
  for (const r of snap.latest) {
    const key = keyOf(r);
    const old = state.latest.get(key);
    if (!old || r.received_ns >= old.received_ns) state.latest.set(key, r);
  }
}

// -- the event stream ---------------------------------------------------------------

let source = null;

function setConn(cls, text) {
  const el = $("#conn");
  el.className = "conn " + cls;
  el.textContent = text;
}

function connect() {
  source = new EventSource("api/events");
  source.onopen = () => setConn("live", "live");
  source.addEventListener("snapshot", (e) => takeSnapshot(JSON.parse(e.data)));
  source.addEventListener("readings", (e) => { for (const r of JSON.parse(e.data)) takeReading(r); });
  source.addEventListener("status", (e) => takeStatus(JSON.parse(e.data)));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // The server answered with an error (a restart in progress): try again ourselves.
      setConn("down", "reconnecting");
      source.close();
      setTimeout(connect, 2000);
    } else {
      setConn("connecting", "reconnecting");
    }
  };
}

// -- tables -------------------------------------------------------------------------

function renderLatest(type) {
  const info = state.types[type] || {fields: {}};
  const rows = [...state.latest.values()].filter((r) => r.type === type)
    .sort((a, b) => (nodeName(a.node) + a.sensor).localeCompare(nodeName(b.node) + b.sensor));
  const fields = Object.keys(info.fields);
  for (const r of rows) for (const [f, v] of Object.entries(r.data)) if (isNum(v) && !fields.includes(f)) fields.push(f);
  let block = document.getElementById("latest-" + type);
  if (!block) {
    block = document.createElement("div");
    block.className = "type-block";
    block.id = "latest-" + type;
    block.dataset.type = type;
    const blocks = [...$("#latest").children, block].sort((a, b) => a.dataset.type.localeCompare(b.dataset.type));
    $("#latest").replaceChildren(...blocks);
  }
  const head = fields.map((f) => `<th>${esc(f)}${info.fields[f] ? " (" + esc(info.fields[f]) + ")" : ""}</th>`).join("");
  const now = Date.now() + state.clockOffsetMs;
  const body = rows.map((r) => {
    const cells = fields.map((f) => {
      const v = r.data[f];
      return `<td class="num value" data-type="${esc(type)}" data-node="${esc(r.node)}" data-sensor="${esc(r.sensor)}" data-field="${esc(f)}" data-value="${isNum(v) ? v : ""}">${v === undefined ? "" : fmtValue(v)}${isNum(v) && info.fields[f] ? " " + esc(info.fields[f]) : ""}</td>`;
    }).join("");
    const flags = (r.clock_synced ? "" : `<span class="flag" title="the sender's clock is not synchronised: its time stamps may be off">clock?</span>`)
      + (r.replayed ? `<span class="flag" title="replayed from a log (ganglion replay)">replayed</span>` : "");
    return `<tr data-key="${esc(keyOf(r))}"><td>${esc(nodeName(r.node))}</td><td>${esc(r.sensor)}</td>${cells}<td class="num age" data-received="${r.received_ns}">${fmtAge(now - r.received_ns / 1e6)}</td><td>${flags}</td></tr>`;
  }).join("");
  block.innerHTML = `<h3>${esc(type)}</h3><table><thead><tr><th>node</th><th>sensor</th>${head}<th>age</th><th></th></tr></thead><tbody>${body}</tbody></table>`;
}

function renderAges() {
  const now = Date.now() + state.clockOffsetMs;
  for (const td of document.querySelectorAll("td.age")) td.textContent = fmtAge(now - Number(td.dataset.received) / 1e6);
}

function renderSide() {
  const now = Date.now() + state.clockOffsetMs;
  $("#nodes tbody").innerHTML = state.nodes.map((n) => `<tr class="${n.live ? "" : "gone"}" data-node="${esc(n.id)}"><td>${esc(n.name)}${n.self ? " (this)" : ""}${n.live ? "" : " (gone)"}</td><td>${esc(n.id.slice(0, 8))}</td><td>${esc(n.address)}</td><td>${esc(n.version)}</td><td>${esc(n.role)}</td><td class="num">${n.self ? "now" : fmtAge(now - n.last_heard * 1000)}</td><td>${esc(n.publishes.join(", "))}</td></tr>`).join("");
  $("#streams tbody").innerHTML = state.stats.streams.map((s) => `<tr><td>${esc(s.type)}</td><td>${esc(nodeName(s.node))}</td><td class="num">${s.received}</td><td class="num">${s.repaired}</td><td class="num${s.lost ? " lost" : ""}">${s.lost}</td><td class="num${s.permanently_lost ? " lost" : ""}">${s.permanently_lost}</td><td class="num">${s.duplicates}</td></tr>`).join("");
  $("#map tbody").innerHTML = Object.entries(state.map).map(([t, g]) => `<tr data-type="${esc(t)}"><td>${esc(t)}</td><td>${esc(g)}</td></tr>`).join("");
  for (const t of Object.keys(state.map)) if (!document.getElementById("latest-" + t)) state.dirty.add(t);
}

// -- charts -------------------------------------------------------------------------

function chartEl(id, title) {
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("div");
    el.className = "plot";
    el.id = id;
    el.dataset.title = title;
    const all = [...$("#plots").children, el].sort((a, b) => a.dataset.title.localeCompare(b.dataset.title));
    $("#plots").replaceChildren(...all);
  }
  return el;
}

function plotWidth() {
  return Math.max(320, Math.min(560, window.innerWidth - 60));
}

function makeChart(id, title, unit, labels, data, bands, xRange) {
  const el = chartEl(id, title);
  const old = state.charts.get(id);
  if (old) old.u.destroy();
  el.innerHTML = `<h3>${esc(title)}${unit ? " (" + esc(unit) + ")" : ""}</h3>`;
  const series = [{}];
  labels.forEach((lab, i) => series.push(lab === null
    ? {stroke: "transparent", points: {show: false}, spanGaps: true, label: "range"}
    : {label: lab.text, stroke: COLORS[lab.color % COLORS.length], width: 1.5, spanGaps: true, points: {show: false}}));
  const opts = {width: plotWidth(), height: 220, series, bands: bands || [], legend: {live: false},
    axes: [{}, {label: unit || "", size: 60}], cursor: {drag: {x: true, y: false}}};
  if (xRange) opts.scales = {x: {time: true, auto: false, range: () => xRange}};
  const u = new uPlot(opts, data, el);
  // The min/max series only draw the band: keep them out of the legend.
  const entries = u.root.querySelectorAll(".u-legend .u-series");
  const off = entries.length - labels.length;  // 1 when the x series has an entry
  labels.forEach((lab, i) => { if (lab === null && entries[i + off]) entries[i + off].style.display = "none"; });
  return u;
}

// Readings of different sensors arrive at slightly different times; plotting them on
// the union of their exact times gives uPlot 50 x 1,200 columns for 50 sensors (and
// uPlot.join takes ~150 ms for that). Times rounded to SLOT_S share a column instead.
const SLOT_S = 0.01;

function alignedData(tables) {
  const slots = new Map();
  for (const [t] of tables) for (const x of t) slots.set(Math.round(x / SLOT_S), 0);
  const keys = [...slots.keys()].sort((a, b) => a - b);
  keys.forEach((k, i) => slots.set(k, i));
  const out = [keys.map((k) => k * SLOT_S)];
  for (const [t, y] of tables) {
    const col = new Array(keys.length).fill(null);
    for (let i = 0; i < t.length; i++) col[slots.get(Math.round(t[i] / SLOT_S))] = y[i];
    out.push(col);
  }
  return out;
}

function liveChartData(keys, field) {
  const tables = keys.map((k) => {
    const s = state.series.get(k);
    return [s.t, s.f[field] || new Array(s.t.length).fill(null)];
  });
  if (tables.length === 1) return tables[0];
  return alignedData(tables);
}

function renderLiveCharts(type) {
  const info = state.types[type] || {fields: {}};
  const keys = [...state.series.keys()].filter((k) => k.startsWith(type + SEP)).sort();
  if (!keys.length) return;
  const fields = new Set(Object.keys(info.fields));
  for (const k of keys) for (const f of Object.keys(state.series.get(k).f)) fields.add(f);
  for (const field of fields) {
    const id = "plot-" + type + "|" + field;
    const data = liveChartData(keys, field);
    const chart = state.charts.get(id);
    if (chart && chart.live && chart.keys.join(SEP + SEP) === keys.join(SEP + SEP)) {
      chart.u.setData(data);
      continue;
    }
    const labels = keys.map((k, i) => {
      const s = state.series.get(k);
      return {text: nodeName(s.node) + (s.sensor ? " " + s.sensor : ""), color: i};
    });
    const u = makeChart(id, type + " " + field, info.fields[field], labels, data);
    state.charts.set(id, {u, keys, live: true, field, type});
  }
}

async function showHistory(since, until) {
  const fetches = [];
  for (const [type, info] of Object.entries(state.types)) {
    for (const field of Object.keys(info.fields)) {
      const q = new URLSearchParams({type, field, since: String(since), until: String(until), points: String(plotWidth())});
      fetches.push(fetch("api/history?" + q).then(async (resp) => {
        const body = await resp.json();
        if (!resp.ok) return null;
        return body;
      }).catch(() => null));
    }
  }
  const results = (await Promise.all(fetches)).filter((b) => b && b.series.length);
  $("#plots-note").textContent = `history ${new Date(since * 1000).toLocaleString()} – ${new Date(until * 1000).toLocaleString()} (min/max band, mean line)`;
  for (const body of results) {
    const id = "plot-" + body.type + "|" + body.field;
    const tables = [];
    const labels = [];
    const bands = [];
    body.series.forEach((s, i) => {
      const t = s.t.map((ms) => ms / 1000);
      tables.push([t, s.mean, s.min, s.max]);
      const base = 1 + i * 3;
      const who = state.names[s.node] || s.node_name || nodeName(s.node);
      labels.push({text: who + (s.sensor ? " " + s.sensor : ""), color: i}, null, null);
      bands.push({series: [base + 2, base + 1], fill: COLORS[i % COLORS.length] + "33"});
    });
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const u = makeChart(id, body.type + " " + body.field, body.unit, labels, data, bands, [since, until]);
    state.charts.set(id, {u, keys: [], live: false, field: body.field, type: body.type});
  }
}

function setWindow(which) {
  for (const b of document.querySelectorAll("nav button[data-window]")) b.classList.toggle("active", b.dataset.window === which);
  $("#custom-range").hidden = which !== "custom";
  if (which === "live") {
    state.mode = "live";
    $("#plots-note").textContent = `live: the last ${state.ring} readings of each sensor`;
    for (const t of Object.keys(state.types)) state.dirty.add(t);
    for (const c of state.charts.values()) c.live = false;  // rebuild as live charts
    return;
  }
  state.mode = "history";
  if (which === "custom") return;
  const until = Date.now() / 1000 + state.clockOffsetMs / 1000;
  showHistory(until - Number(which), until);
}

// -- the page loop --------------------------------------------------------------------

function redraw() {
  const types = [...state.dirty];
  state.dirty.clear();
  for (const t of types) {
    renderLatest(t);
    if (state.mode === "live") renderLiveCharts(t);
  }
}

function init() {
  for (const b of document.querySelectorAll("nav button[data-window]")) b.addEventListener("click", () => setWindow(b.dataset.window));
  $("#apply").addEventListener("click", () => {
    const since = new Date($("#from").value).getTime() / 1000;
    const until = new Date($("#to").value).getTime() / 1000;
    if (since < until) showHistory(since, until);
  });
  setInterval(redraw, REDRAW_MS);
  setInterval(renderAges, 1000);
  $("#plots-note").textContent = "live";
  connect();
}

// For tests and curious users: what the page holds (the browser tests read this).
window.ganglionDashboard = {
  state,
  chartPoints(type, field, node, sensor) {
    const chart = state.charts.get("plot-" + type + "|" + field);
    if (!chart || !chart.live) return 0;
    const i = chart.keys.indexOf(type + SEP + node + SEP + sensor);
    if (i < 0) return 0;
    const ys = chart.u.data[i + 1];
    return ys.filter((v) => v !== null && v !== undefined).length;
  },
  charts: () => [...state.charts.keys()],
};

init();
