// The operator's view of the cluster: polls every node process's /api/cluster, /api/overview and
// /metrics about once a second (docs/web.md) and shows regions and their processes, load, links,
// merges and documents. A region running one process is named by its region, one running
// several by each process's node id (`label`).

import { $, ago, fill, h, show } from "./dom.js";
import { ApiError, api, fetchRegions, text } from "./net.js";

const TOKEN_KEY = "meridian.admin";
const POLL_MS = 1000;
const REGIONS_EVERY = 10; // polls between refreshes of the region list
const TIMEOUT_MS = 2000;
const MAX_DOC_ROWS = 300;
const MERGE_KINDS = ["name", "double_login", "same_ply", "two_games"];
const MERGE_LABELS = {
  name: "name claimed twice",
  double_login: "logged in twice",
  same_ply: "two moves for one turn",
  two_games: "two games at once",
};

const D = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  regions: [], // node processes: [{region, node, url}]
  results: new Map(), // node -> {ok, cluster, overview, merges, error, at}
  baseline: new Map(), // node -> merges when first seen
  movedBaseline: null, // players moved by the rebalancers when the page first saw the load
  differSince: new Map(), // doc id -> ms
  polls: 0,
  timer: null,
  generation: 0, // a poll loop stops when a newer one starts
  paused: false,
  demo: null, // under `meridian demo`: {regions: {name: {up, url}}, nodes: {id: {region, up, url}}}; else null
  demoNote: "",
};

function askToken(message = "") {
  show($("#token-form"), true);
  show($("#dash"), false);
  show($("#forget"), false);
  $("#token-error").textContent = message;
  $("#token").focus();
  stop();
}

function stop() {
  if (D.timer) clearTimeout(D.timer);
  D.timer = null;
}

function startPolling() {
  show($("#token-form"), false);
  show($("#dash"), true);
  show($("#forget"), true);
  stop();
  D.generation += 1;
  poll(D.generation);
}

async function poll(generation) {
  D.timer = null;
  if (D.paused || generation !== D.generation) return;
  try {
    if (!D.regions.length || D.polls % REGIONS_EVERY === 0) {
      try {
        D.regions = await fetchRegions("");
      } catch (error) {
        if (!D.regions.length) throw error;
      }
    }
    D.polls += 1;
    const [results] = await Promise.all([Promise.all(D.regions.map((r) => pollRegion(r))), pollDemo()]);
    if (generation !== D.generation) return;
    if (results.some((r) => r.error?.status === 401)) {
      sessionStorage.removeItem(TOKEN_KEY);
      D.token = "";
      askToken("The admin token was refused. Enter the cluster's admin token.");
      return;
    }
    for (const result of results) D.results.set(result.region.node, result);
    render();
    const ok = results.filter((r) => r.ok).length;
    const what = regionCount() === results.length ? "regions" : "node processes";
    $("#poll-status").textContent = `${ok}/${results.length} ${what} answered at ${new Date().toLocaleTimeString()}; polling every ${POLL_MS / 1000} s`;
    $("#poll-status").className = `conn-status ${ok === results.length ? "ok" : "warn"}`;
  } catch (error) {
    $("#poll-status").textContent = `Polling failed: ${error.message}`;
    $("#poll-status").className = "conn-status down";
  }
  if (!D.paused && D.token && generation === D.generation) D.timer = setTimeout(() => poll(generation), POLL_MS);
}

async function pollRegion(region) {
  const options = { token: D.token, timeout: TIMEOUT_MS };
  const [cluster, overview, metrics] = await Promise.allSettled([
    api(`${region.url}/api/cluster`, options),
    api(`${region.url}/api/overview`, options),
    text(`${region.url}/metrics`, { timeout: TIMEOUT_MS }),
  ]);
  if (cluster.status === "rejected") {
    const error = cluster.reason instanceof ApiError ? cluster.reason : new ApiError("network", String(cluster.reason));
    return { region, ok: false, error, at: Date.now() };
  }
  const ov = overview.status === "fulfilled" ? overview.value : null;
  const fromMetrics = metrics.status === "fulfilled" ? parseMerges(metrics.value) : null;
  const merges = fromMetrics || ov?.merges || null;
  if (merges && !D.baseline.has(region.node)) D.baseline.set(region.node, { ...merges });
  return { region, ok: true, cluster: cluster.value, overview: ov, merges, mergesFrom: fromMetrics ? "metrics" : "overview", at: Date.now() };
}

/** Under `meridian demo`: which regions it runs and which are up (any answering region knows). */
async function pollDemo() {
  for (const region of [{ url: "" }, ...D.regions]) {
    try {
      D.demo = await api(`${region.url}/api/demo`, { token: D.token, timeout: TIMEOUT_MS });
      return;
    } catch (error) {
      if (error.code === "not_demo" || error.status === 401) {
        D.demo = null;
        return;
      }
    }
  }
}

/** Kill a region's node process (SIGKILL) or start it again, through another process that
 *  answers; `target` is a region (one process) or a node id (several per region). */
async function demoAction(action, target) {
  const via = D.regions.filter((r) => r.region !== target && r.node !== target && D.results.get(r.node)?.ok);
  const through = via[0] || D.regions.find((r) => r.region === target || r.node === target);
  try {
    await api(`${through.url}/api/demo/${action}/${encodeURIComponent(target)}`, { method: "POST", body: {}, token: D.token, timeout: TIMEOUT_MS });
    D.demoNote = action === "kill"
      ? `Killed ${target} (SIGKILL). Its players reconnect to another region; the demo restarts it after its delay, or press Start.`
      : `Asked the demo to start ${target}; it rejoins and catches up from its peers.`;
  } catch (error) {
    D.demoNote = `Could not ${action} ${target}: ${error.message}`;
  }
  $("#demo-note").textContent = D.demoNote;
}

function demoButtons(region) {
  const info = D.demo?.nodes?.[region.node] || D.demo?.regions?.[region.region];
  if (!info) return null;
  const target = label(region);
  const reachable = D.results.get(region.node)?.ok;
  return h("div", { class: "buttons demo-buttons" },
    info.up && reachable
      ? h("button", { type: "button", class: "danger", dataset: { demoKill: target }, text: `Kill ${target}`, title: "SIGKILL this node process, as a crash would", on: { click: () => demoAction("kill", target) } })
      : h("button", { type: "button", class: "primary", dataset: { demoStart: target }, text: `Start ${target}`, on: { click: () => demoAction("start", target) } }),
  );
}

/** How many regions the polled processes belong to. */
function regionCount() {
  return new Set(D.regions.map((r) => r.region)).size;
}

/** A process's name here: its region when the region runs one process, else its node id. */
function label(process) {
  const several = D.regions.filter((r) => r.region === process.region).length > 1;
  return several ? process.node : process.region;
}

/** The name of a peer (from a node's /api/cluster) by the same rule. */
function peerLabel(peer) {
  return label({ region: peer.region, node: peer.node });
}

/** meridian_merges_total{kind="..."} N lines of the Prometheus text, or null if absent. */
export function parseMerges(body) {
  const merges = {};
  let found = false;
  for (const line of body.split("\n")) {
    const m = line.match(/^meridian_merges_total\{[^}]*kind="([^"]+)"[^}]*\}\s+([0-9.eE+-]+)/);
    if (m) {
      merges[m[1]] = Number(m[2]);
      found = true;
    }
  }
  return found ? merges : null;
}

// --- drawing -----------------------------------------------------------------------------

function render() {
  renderRegions();
  renderLoad();
  renderLinks();
  renderMerges();
  renderDocs();
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v < 10 ? `${v.toFixed(2)} ms` : `${Math.round(v)} ms`;
}

function uptime(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function renderRegions() {
  const cards = D.regions.map((region) => {
    const r = D.results.get(region.node);
    const title = label(region) === region.region ? region.region : `${region.region} · ${region.node}`;
    if (!r || !r.ok) {
      return h("article", { class: "region-card down", dataset: { region: region.region, node: region.node, reachable: "false" } },
        h("h3", { text: title }),
        h("p", { class: "muted", text: `${region.node} · ${region.url}` }),
        h("p", { class: "state down", text: `unreachable from this browser${r?.error ? `: ${r.error.message}` : ""}` }),
        demoButtons(region),
      );
    }
    const c = r.cluster;
    const up = c.peers.filter((p) => p.link === "up").length;
    const ov = r.overview;
    return h("article", { class: ["region-card", up === c.peers.length ? "ok" : "warn"], dataset: { region: region.region, node: region.node, reachable: "true" } },
      h("h3", { text: title }),
      h("p", { class: "muted", text: `${c.node.id} · ${c.node.url} · ${c.node.version} · up ${uptime(c.node.uptime_s)}` }),
      h("dl", { class: "stats" },
        stat("players online", ov ? ov.players_online : "?", "players"),
        stat("games in play", ov ? ov.games_in_play : "?", "games"),
        stat("peers linked", `${up}/${c.peers.length}`, "peers"),
        stat("documents", c.documents.length, "documents"),
        stat("changes made here", c.changes.local, "local"),
        stat("changes from peers", c.changes.from_peers, "remote"),
      ),
      ov && ov.players.length ? h("p", { class: "muted small", text: `online here: ${ov.players.join(", ")}` }) : null,
      demoButtons(region),
    );
  });
  fill($("#regions"), cards);
}

/** Every process's load entry (node.observer): each answering node shows the whole cluster's,
 *  so the freshest copy of each is kept. */
function loadEntries() {
  const freshest = new Map(); // node -> entry
  for (const r of D.results.values()) {
    if (!r.ok || !r.cluster.load) continue;
    for (const entry of r.cluster.load.nodes) {
      const known = freshest.get(entry.node);
      if (!known || entry.at_ms > known.at_ms) freshest.set(entry.node, entry);
    }
  }
  return [...freshest.values()].sort((a, b) => a.region.localeCompare(b.region) || a.node.localeCompare(b.node));
}

function loadCells(load, now) {
  return [
    h("td", { dataset: { figure: "connections" }, text: String(load.connections) }),
    h("td", { dataset: { figure: "moves" }, text: load.moves_per_s.toFixed(1) }),
    h("td", { dataset: { figure: "lag" }, class: load.loop_lag_ms >= 100 ? "hot" : "", text: fmtMs(load.loop_lag_ms) }),
    h("td", { dataset: { figure: "cpu" }, text: `${Math.round(load.cpu_percent)} %` }),
    h("td", { dataset: { figure: "queue" }, text: String(load.store_queue) }),
    h("td", { dataset: { figure: "backlog" }, text: String(load.replication_backlog) }),
    h("td", { dataset: { figure: "moved_out" }, text: String(load.moved_out ?? 0) }),
    h("td", { dataset: { figure: "moved_in" }, text: String(load.moved_in ?? 0) }),
    h("td", { class: "muted", text: load.at_ms ? ago(load.at_ms, now) : "" }),
  ];
}

function renderLoad() {
  const entries = loadEntries();
  const now = Date.now();
  const regions = new Map();
  for (const entry of entries) {
    if (!regions.has(entry.region)) regions.set(entry.region, []);
    regions.get(entry.region).push(entry);
  }
  const rows = [];
  for (const [region, members] of regions) {
    const sum = (key) => members.reduce((total, e) => total + e[key], 0);
    const total = {
      connections: sum("connections"), moves_per_s: sum("moves_per_s"), cpu_percent: sum("cpu_percent"),
      loop_lag_ms: Math.max(...members.map((e) => e.loop_lag_ms)), store_queue: sum("store_queue"),
      replication_backlog: sum("replication_backlog"), moved_out: sum("moved_out"), moved_in: sum("moved_in"), at_ms: 0,
    };
    rows.push(h("tr", { class: "load-region", dataset: { loadRegion: region } },
      h("th", { scope: "row", text: `${region} (${members.length} process${members.length === 1 ? "" : "es"})` }), loadCells(total, now)));
    for (const entry of members) {
      rows.push(h("tr", { dataset: { loadNode: entry.node } }, h("td", { class: "mono", text: `  ${entry.node}` }), loadCells(entry, now)));
    }
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { attrs: { colspan: "10" }, class: "muted", text: "no load published yet" })));
  fill($("#load tbody"), rows);
  renderMoving(entries);
}

/** Players moving: the hand-overs each answering node's rebalancer has under way now, and the
 *  players all rebalancers moved (in total, and since this page first saw the load). */
function renderMoving(entries) {
  const moving = [];
  const on = [];
  for (const [region, r] of D.results) {
    const rebalance = r.ok ? r.cluster.rebalance : null;
    if (!rebalance) continue;
    if (rebalance.enabled) on.push(region);
    if (rebalance.moving) moving.push(`${region} ${rebalance.moving}`);
  }
  const moved = entries.reduce((total, e) => total + (e.moved_out ?? 0), 0);
  if (D.movedBaseline === null && entries.length) D.movedBaseline = moved;
  const recent = moved - (D.movedBaseline ?? moved);
  const now = moving.length ? `players moving now: ${moving.join(", ")}` : "players moving now: none";
  const rebalancing = on.length ? `rebalancing on in ${on.join(", ")}` : "rebalancing off in every region that answered";
  const el = $("#moving");
  el.textContent = `${now}; ${moved} moved by the rebalancers${recent > 0 ? `, +${recent} since this page opened` : ""} (${rebalancing}).`;
  el.dataset.moving = String(moving.length);
  el.dataset.moved = String(moved);
  el.classList.toggle("hot", moving.length > 0 || recent > 0);
}

function stat(label, value, key) {
  return h("div", { dataset: { stat: key } }, h("dt", { text: label }), h("dd", { text: String(value) }));
}

/** Every node's view of its links: [{from, to, peer}] (only from processes that answered). */
function linkRows() {
  const rows = [];
  for (const region of D.regions) {
    const r = D.results.get(region.node);
    if (!r || !r.ok) continue;
    for (const peer of r.cluster.peers) rows.push({ from: label(region), to: peerLabel(peer), peer });
  }
  return rows;
}

function renderLinks() {
  const rows = linkRows();
  fill($("#links tbody"), rows.map(({ from, to, peer }) =>
    h("tr", { dataset: { link: `${from}-${to}`, state: peer.link } },
      h("td", { text: from }),
      h("td", { text: to }),
      h("td", {}, h("span", { class: ["state", peer.link], text: peer.link })),
      h("td", { text: fmtMs(peer.rtt_ms) }),
      h("td", { text: fmtMs(peer.lag_ms.p50) }),
      h("td", { text: fmtMs(peer.lag_ms.p99) }),
      h("td", { text: fmtMs(peer.lag_ms.last) }),
      h("td", { text: `${peer.updates_sent} / ${peer.updates_received}` }),
    )));
  renderGraph(rows);
}

/** The processes on a circle (named as `label` says), one line per pair: green both ways up,
 *  red both down, amber when the two ends disagree, grey when neither end answered. */
function renderGraph(rows) {
  const ns = "http://www.w3.org/2000/svg";
  const names = D.regions.map((r) => label(r));
  const nodeOf = new Map(D.regions.map((r) => [label(r), r.node]));
  const size = 300;
  const radius = 105;
  const pos = new Map(names.map((name, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, names.length);
    return [name, [size / 2 + radius * Math.cos(angle), size / 2 + radius * Math.sin(angle)]];
  }));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("role", "img");
  const el = (tag, attrs, textContent) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (textContent !== undefined) node.textContent = textContent;
    svg.append(node);
    return node;
  };
  const view = new Map(rows.map((r) => [`${r.from}-${r.to}`, r.peer]));
  const summary = [];
  for (let i = 0; i < names.length; i += 1) {
    for (let j = i + 1; j < names.length; j += 1) {
      const [a, b] = [names[i], names[j]];
      const ab = view.get(`${a}-${b}`);
      const ba = view.get(`${b}-${a}`);
      const states = [ab?.link, ba?.link].filter(Boolean);
      let state = "unknown";
      if (states.length && states.every((s) => s === "up")) state = "up";
      else if (states.length && states.every((s) => s === "down")) state = "down";
      else if (states.length) state = "partial";
      const [x1, y1] = pos.get(a);
      const [x2, y2] = pos.get(b);
      el("line", { x1, y1, x2, y2, class: `edge ${state}`, "data-pair": `${a}-${b}` });
      const lag = [ab?.lag_ms.p50, ba?.lag_ms.p50].filter((v) => v !== null && v !== undefined);
      const label = state === "up" ? (lag.length ? fmtMs(Math.max(...lag)) : "up") : state;
      el("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, class: `edge-label ${state}`, "text-anchor": "middle" }, label);
      summary.push(`${a}–${b} ${state}`);
    }
  }
  for (const name of names) {
    const [x, y] = pos.get(name);
    const ok = D.results.get(nodeOf.get(name))?.ok;
    el("circle", { cx: x, cy: y, r: 26, class: `node ${ok ? "ok" : "down"}` });
    el("text", { x, y: y + 5, class: "node-label", "text-anchor": "middle" }, name);
  }
  svg.setAttribute("aria-label", `Links: ${summary.join(", ")}`);
  fill($("#link-graph"), svg);
}

function renderMerges() {
  const kinds = new Set(MERGE_KINDS);
  for (const r of D.results.values()) if (r.ok && r.merges) for (const k of Object.keys(r.merges)) kinds.add(k);
  fill($("#merges thead"), h("tr", {}, h("th", { scope: "col", text: "Region" }), [...kinds].map((k) => h("th", { scope: "col", text: MERGE_LABELS[k] || k }))));
  fill($("#merges tbody"), D.regions.map((region) => {
    const r = D.results.get(region.node);
    const name = label(region);
    if (!r || !r.ok) return h("tr", {}, h("td", { text: name }), h("td", { attrs: { colspan: String(kinds.size) }, class: "muted", text: "unreachable" }));
    if (!r.merges) return h("tr", {}, h("td", { text: name }), h("td", { attrs: { colspan: String(kinds.size) }, class: "muted", text: "not reported by this node" }));
    const base = D.baseline.get(region.node) || {};
    return h("tr", { dataset: { region: region.region, node: region.node } }, h("td", { text: name }), [...kinds].map((k) => {
      const total = r.merges[k] || 0;
      const recent = total - (base[k] || 0);
      return h("td", { dataset: { kind: k }, class: recent > 0 ? "hot" : "" }, `${total}`, recent > 0 ? h("span", { class: "badge warn", text: `+${recent} recent` }) : null);
    }));
  }));
}

function renderDocs() {
  const answered = D.regions.filter((r) => D.results.get(r.node)?.ok);
  const digests = new Map(); // doc -> Map node -> digest
  for (const region of answered) {
    for (const doc of D.results.get(region.node).cluster.documents) {
      if (!digests.has(doc.id)) digests.set(doc.id, new Map());
      digests.get(doc.id).set(region.node, doc.digest);
    }
  }
  const now = Date.now();
  const rows = [];
  let differ = 0;
  for (const [id, byRegion] of digests) {
    const values = answered.map((r) => byRegion.get(r.node));
    const same = values.every((v) => v !== undefined && v === values[0]);
    if (same) D.differSince.delete(id);
    else {
      differ += 1;
      if (!D.differSince.has(id)) D.differSince.set(id, now);
    }
    rows.push({ id, byRegion, same });
  }
  for (const id of D.differSince.keys()) if (!digests.has(id)) D.differSince.delete(id);
  const [one, many] = regionCount() === D.regions.length ? ["region", "regions"] : ["node process", "node processes"];
  $("#docs-summary").textContent = `${digests.size} documents across ${answered.length} answering ${answered.length === 1 ? one : many}: ` +
    `${digests.size - differ} with equal digests everywhere, ${differ} differing${differ ? " (replication in flight, or a partition)" : ""}.`;
  $("#docs-summary").dataset.differ = String(differ);
  const filter = $("#doc-filter").value.trim();
  const onlyDiff = $("#doc-only-diff").checked;
  const shown = rows
    .filter((r) => (!filter || r.id.includes(filter)) && (!onlyDiff || !r.same))
    .sort((a, b) => (a.same === b.same ? a.id.localeCompare(b.id) : a.same ? 1 : -1));
  fill($("#docs thead"), h("tr", {}, h("th", { scope: "col", text: "Document" }), answered.map((r) => h("th", { scope: "col", text: label(r) })), h("th", { scope: "col", text: "State" })));
  fill($("#docs tbody"), shown.slice(0, MAX_DOC_ROWS).map((r) =>
    h("tr", { dataset: { doc: r.id, state: r.same ? "same" : "differs" } },
      h("td", { class: "mono", text: r.id }),
      answered.map((region) => {
        const digest = r.byRegion.get(region.node);
        return h("td", { class: "mono", title: digest || "missing", text: digest ? digest.slice(0, 10) : "missing" });
      }),
      h("td", {}, r.same
        ? h("span", { class: "state up", text: "in sync" })
        : h("span", { class: "state down", text: `differs for ${Math.round((now - D.differSince.get(r.id)) / 1000)} s` })),
    )),
    shown.length > MAX_DOC_ROWS ? h("tr", {}, h("td", { attrs: { colspan: String(answered.length + 2) }, class: "muted", text: `${shown.length - MAX_DOC_ROWS} more; use the filter` })) : null,
  );
}

// --- start -------------------------------------------------------------------------------

function start() {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    D.token = $("#token").value.trim();
    if (!D.token) return;
    sessionStorage.setItem(TOKEN_KEY, D.token);
    $("#token").value = "";
    startPolling();
  });
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    D.token = "";
    askToken();
  });
  $("#pause").addEventListener("change", (event) => {
    D.paused = event.target.checked;
    if (!D.paused && D.token) startPolling();
    else stop();
  });
  for (const id of ["#doc-filter", "#doc-only-diff"]) $(id).addEventListener("input", () => renderDocs());
  if (D.token) startPolling();
  else askToken();
}

start();
