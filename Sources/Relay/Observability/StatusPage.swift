// The status page is one HTML document with its CSS and JS inline (no external assets: an
// admin port is often reached through a tunnel with nothing else), so this file is mostly that
// document; the Swift around it is two lines.

/// `GET /` on the admin listener: polls `/api/status` every second and shows problems first
/// (a red banner), then per-backend cards (up/down, last error, throughput sparkline, queue and
/// spill bars), relay-wide ingest, residency refusals by region, the routing table, listeners and
/// a route explainer (`/api/routes`). Elements carry `data-*` attributes the browser test reads.
enum StatusPage {
    static let html: [UInt8] = Array(document.utf8)

    private static let document = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tracerelay status</title>
<style>
:root { --bg:#111418; --panel:#1a1f26; --line:#2a313b; --text:#d8dee9; --dim:#8b95a5; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--text); }
header { display:flex; gap:16px; align-items:baseline; padding:10px 16px; border-bottom:1px solid var(--line); flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; }
header .meta { color:var(--dim); }
main { padding:12px 16px; display:grid; gap:12px; }
.banner { padding:10px 14px; border-radius:6px; font-weight:600; }
.banner.ok { background:#12261a; color:var(--ok); border:1px solid #1f4d2b; }
.banner.bad { background:#2d1214; color:var(--bad); border:1px solid #5c1f22; }
.banner ul { margin:4px 0 0; padding-left:20px; font-weight:500; }
.tiles { display:grid; grid-template-columns:repeat(auto-fit, minmax(190px, 1fr)); gap:12px; }
.tile, .card, section { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.tile .label { color:var(--dim); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile .value { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(380px, 1fr)); gap:12px; }
.card.down { border-color:var(--bad); box-shadow:0 0 0 1px var(--bad) inset; }
.card h3 { margin:0; font-size:16px; display:flex; gap:8px; align-items:center; }
.pill { font-size:11px; padding:1px 7px; border-radius:10px; font-weight:700; }
.pill.up { background:#12261a; color:var(--ok); }
.pill.down { background:var(--bad); color:#fff; }
.sub { color:var(--dim); font-size:12px; overflow-wrap:anywhere; }
.err { color:var(--bad); font-weight:600; margin-top:4px; overflow-wrap:anywhere; }
.row { display:flex; justify-content:space-between; gap:8px; font-variant-numeric:tabular-nums; }
.nums { display:grid; grid-template-columns:repeat(4, 1fr); gap:4px; margin-top:6px; }
.nums div { font-size:12px; color:var(--dim); } .nums b { display:block; font-size:15px; color:var(--text); }
.bar { height:8px; background:#0d1117; border-radius:4px; overflow:hidden; margin:2px 0 6px; }
.bar > i { display:block; height:100%; background:var(--accent); }
.bar.disk > i { background:var(--warn); }
svg.spark { width:100%; height:44px; display:block; margin-top:6px; }
svg.spark polyline { fill:none; stroke:var(--accent); stroke-width:1.5; }
svg.spark.ingest polyline { stroke:var(--ok); }
svg.spark.refused polyline { stroke:var(--bad); }
h2 { font-size:14px; margin:0 0 8px; color:var(--dim); text-transform:uppercase; letter-spacing:.05em; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--dim); font-weight:500; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.cols { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
@media (max-width:900px) { .cols { grid-template-columns:1fr; } }
form { display:flex; gap:8px; flex-wrap:wrap; }
input { background:#0d1117; color:var(--text); border:1px solid var(--line); border-radius:4px; padding:4px 8px; min-width:320px; }
button { background:var(--accent); color:#0d1117; border:0; border-radius:4px; padding:4px 12px; font-weight:600; cursor:pointer; }
pre { white-space:pre-wrap; margin:8px 0 0; font-size:12px; color:var(--dim); }
.stale { color:var(--bad); font-weight:700; }
</style>
</head>
<body>
<header>
  <h1>tracerelay</h1>
  <span class="meta" id="version"></span>
  <span class="meta">up <b id="uptime" data-uptime="">–</b></span>
  <span class="meta" id="ready"></span>
  <span class="meta" id="polled"></span>
</header>
<main>
  <div id="banner" class="banner ok">Loading…</div>
  <div class="tiles">
    <div class="tile"><div class="label">Ingest spans/s</div><div class="value" id="ingest-rate">–</div><svg class="spark ingest" id="ingest-spark" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
    <div class="tile"><div class="label">Spans received</div><div class="value" id="ingest-spans" data-spans="0">–</div><div class="sub" id="ingest-bytes"></div></div>
    <div class="tile"><div class="label">Refused spans/s</div><div class="value" id="refused-rate">–</div><svg class="spark refused" id="refused-spark" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
    <div class="tile"><div class="label">Connections</div><div class="value" id="connections">–</div><div class="sub" id="listeners-short"></div></div>
  </div>
  <div class="cards" id="backends"></div>
  <div class="cols">
    <section><h2>Refused for residency, by region</h2><table id="residency"><tbody></tbody></table></section>
    <section><h2>Listeners</h2><table id="listeners"><tbody></tbody></table></section>
  </div>
  <section><h2>Routing table (selectors → backend → region)</h2><table id="routes"><thead><tr><th>mesh</th><th>resource</th><th>selector</th><th>backend</th><th>region</th><th class="num">sampling</th><th>note</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Where would a span go?</h2>
    <form id="explain"><input id="explain-tags" placeholder="kuma.io/service=web kuma.io/zone=zone-eu-1"><button>Explain</button></form>
    <pre id="explain-out"></pre>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (n) => Math.round(n).toLocaleString("en-US");
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
function spark(values) {
  const v = values.slice(-120);
  if (v.length < 2) return "";
  const max = Math.max(...v, 1);
  const pts = v.map((y, i) => `${(i / (v.length - 1) * 100).toFixed(2)},${(29 - y / max * 27).toFixed(2)}`).join(" ");
  return `<polyline points="${pts}" vector-effect="non-scaling-stroke"/>`;
}
const plural = (n, word) => `${num(n)} ${word}${n === 1 ? "" : "s"}`;
const last = (a) => a && a.length ? a[a.length - 1] : 0;
function bar(cls, used, limit) {
  const pct = limit > 0 ? Math.min(100, used / limit * 100) : 0;
  return `<div class="row sub"><span>${cls}</span><span>${bytes(used)} / ${bytes(limit)} (${pct.toFixed(pct < 10 ? 1 : 0)}%)</span></div>` +
         `<div class="bar ${cls}"><i style="width:${pct}%"></i></div>`;
}
function backendCard(b) {
  const q = b.queue, rate = last(b.history.sent_per_second);
  return `<div class="card ${b.up ? "up" : "down"}" data-backend="${esc(b.name)}" data-up="${b.up}" data-sent="${b.sent_spans}">
    <h3>${esc(b.name)} <span class="pill ${b.up ? "up" : "down"}">${b.up ? "UP" : "DOWN"}</span></h3>
    <div class="sub">${esc(b.kind)} · region ${esc(b.region ?? "none")} · ${esc(b.target)} · ${esc(b.durability)}</div>
    ${b.last_error ? `<div class="err" data-last-error>last error: ${esc(b.last_error)}</div>` : ""}
    <div class="row" style="margin-top:6px"><span>${num(rate)} spans/s sent</span><span class="sub">latency ${(b.last_latency_seconds * 1000).toFixed(1)} ms</span></div>
    <svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none">${spark(b.history.sent_per_second)}</svg>
    <div class="nums">
      <div>sent<b class="sent">${num(b.sent_spans)}</b></div>
      <div>retried<b>${num(b.retried_spans)}</b></div>
      <div>dropped<b style="${b.dropped_spans ? "color:var(--bad)" : ""}">${num(b.dropped_spans)}</b></div>
      <div>failed req<b>${num(b.failed_requests)}</b></div>
    </div>
    <div style="margin-top:8px">${bar("memory", q.memory_bytes, q.memory_limit_bytes)}${bar("disk", q.disk_bytes, q.disk_limit_bytes)}</div>
    <div class="sub">${plural(q.records, "record")} queued · ${plural(q.segments, "spill segment")} · oldest ${duration(q.oldest_age_seconds)}</div>
  </div>`;
}
function render(s) {
  $("version").textContent = "v" + s.version;
  $("uptime").textContent = duration(s.uptime_seconds);
  $("uptime").dataset.uptime = s.uptime_seconds;
  $("ready").innerHTML = s.ready ? "ready" : `<span class="stale">not ready: ${esc(s.ready_reason)}</span>`;
  $("polled").textContent = "updated " + new Date().toLocaleTimeString();
  const problems = s.problems;
  const banner = $("banner");
  banner.className = "banner " + (problems.length ? "bad" : "ok");
  banner.dataset.problems = problems.length;
  banner.innerHTML = problems.length
    ? `${problems.length} problem${problems.length > 1 ? "s" : ""}<ul>${problems.map((p) => `<li>${esc(p)}</li>`).join("")}</ul>`
    : `All ${s.backends.length} backend${s.backends.length === 1 ? "" : "s"} up · nothing refused for residency`;
  const h = s.history;
  $("ingest-rate").textContent = num(last(h.ingest_spans_per_second));
  $("ingest-spark").innerHTML = spark(h.ingest_spans_per_second);
  $("ingest-spans").textContent = num(s.ingest.spans);
  $("ingest-spans").dataset.spans = s.ingest.spans;
  $("ingest-bytes").textContent = `${bytes(s.ingest.bytes)} in ${num(s.ingest.requests)} requests · ${num(s.ingest.rejected_requests)} rejected`;
  $("refused-rate").textContent = num(last(h.refused_spans_per_second));
  $("refused-spark").innerHTML = spark(h.refused_spans_per_second);
  $("connections").textContent = num(s.open_connections);
  $("listeners-short").textContent = s.listeners.map((l) => `${l.name} ${l.address}`).join(" · ");
  // Problems first: down backends, then spilling ones, then by name.
  const order = (b) => (b.up ? 2 : 0) + (b.queue.disk_bytes > 0 && b.durability !== "wal" ? 0 : 1);
  const backends = [...s.backends].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
  $("backends").innerHTML = backends.length ? backends.map(backendCard).join("")
    : `<div class="card"><div class="sub">No sending backends configured.</div></div>`;
  const regions = Object.entries(s.routing.refused_by_region).sort((a, b) => b[1] - a[1]);
  $("residency").tBodies[0].innerHTML = regions.length
    ? regions.map(([r, n]) => `<tr data-region="${esc(r)}" data-refused="${n}"><td>${esc(r)}</td><td class="num" style="color:var(--bad)">${num(n)}</td></tr>`).join("")
    : `<tr><td class="sub">none${s.routing.residency_enabled ? "" : " (residency is off: no regions configured)"}</td></tr>`;
  $("listeners").tBodies[0].innerHTML = s.listeners.map((l) =>
    `<tr data-listener="${esc(l.name)}"><td>${esc(l.name)}</td><td>${esc(l.address)}</td><td class="sub">${esc(l.kind)}</td></tr>`).join("");
  $("routes").tBodies[0].innerHTML = s.routing.rows.length ? s.routing.rows.map((r) =>
    `<tr data-route-backend="${esc(r.backend)}"><td>${esc(r.mesh)}</td><td>${esc(r.resource_type)} ${esc(r.resource)}</td><td>${esc(r.selector)}</td>` +
    `<td>${esc(r.backend)}</td><td>${esc(r.region ?? "–")}</td><td class="num">${r.sampling}%</td><td class="sub">${esc(r.note)}</td></tr>`).join("")
    : `<tr><td colspan="7" class="sub">no routing configuration</td></tr>`;
}
let failures = 0;
async function poll() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    failures = 0;
  } catch (e) {
    failures++;
    $("polled").innerHTML = `<span class="stale">relay not answering (${esc(e.message)}) — ${failures} polls failed</span>`;
    $("banner").className = "banner bad";
  }
}
$("explain").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("explain-tags").value.trim().split(/\s+/).filter(Boolean).map((t) => "tag=" + encodeURIComponent(t)).join("&");
  const r = await fetch("/api/routes?" + q, { cache: "no-store" });
  $("explain-out").textContent = JSON.stringify(await r.json(), null, 2);
});
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""#
}
