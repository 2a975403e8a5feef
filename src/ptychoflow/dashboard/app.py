"""The dashboard web app: one auto-refreshing page, a JSON API, and /metrics."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ptychoflow.dashboard.metrics import metrics_registry, render_metrics
from ptychoflow.dashboard.sources import DashboardSources

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ptychoflow dashboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222} h2{margin-top:1.4em}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}
.SUCCEEDED{color:#2e7d32}.FAILED{color:#c62828}.ACTIVE{color:#b26a00}.ENDED{color:#777}
.INACTIVE,.inactive{color:#6a1b9a;font-weight:bold}
#inactive{background:#fff3cd;border:1px solid #e0b100;padding:6px 10px;margin:8px 0} #inactive:empty{display:none}
.banner{padding:8px 12px;border-radius:4px;margin:.5em 0;font-weight:600}
.banner.ok{background:#e8f5e9;color:#1b5e20}.banner.bad{background:#c62828;color:#fff}.banner.none{background:#eee;color:#555}
.reason{color:#c62828;font-size:12px;max-width:32em;white-space:pre-wrap}
.timeline{display:flex;gap:3px;align-items:flex-end}
.seg{display:flex;flex-direction:column;align-items:flex-start;font-size:11px;color:#333}
.seg .bar{height:12px;border-radius:2px;background:#5c6bc0}
.seg .bar.SUCCEEDED{background:#66bb6a}.seg .bar.FAILED{background:#e53935}
.seg .bar.ACTIVE{background:repeating-linear-gradient(45deg,#ffb300,#ffb300 4px,#ffe082 4px,#ffe082 8px)}
.seg .lbl{white-space:nowrap;line-height:1.25}.seg .lbl b{font-weight:600}
.err{color:#c62828}.none{color:#777;font-style:italic}
</style></head><body>
<h1>ptychoflow</h1><p id="updated">loading…</p>
<div id="engine" class="banner none">engine: …</div><div id="inactive"></div>
<h2>Flow runs</h2><table id="runs"><thead><tr><th>run</th><th>label</th><th>status</th><th>state</th><th>timeline</th></tr></thead><tbody></tbody></table>
<h2>Watcher journal</h2><table id="journal"><thead><tr><th>scan</th><th>state</th><th>run</th><th>unchanged for</th><th>detail</th></tr></thead><tbody></tbody></table>
<h2>Model registry</h2><table id="models"><thead><tr><th>version</th><th>parent</th><th>val loss</th><th>SSIM</th><th>best</th></tr></thead><tbody></tbody></table>
<h2>Edge</h2><pre id="edge"></pre>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const secs = d => d == null ? "running" : d < 1 ? (d * 1000).toFixed(0) + " ms" : d < 120 ? d.toFixed(1) + " s" : (d / 60).toFixed(1) + " min";
function rows(id, items, render, empty) {
  const body = document.querySelector(`#${id} tbody`);
  if (!Array.isArray(items)) { body.innerHTML = `<tr><td class="err" colspan="5">${esc(items && items.error)}</td></tr>`; return; }
  body.innerHTML = items.length ? items.map(render).join("") : `<tr><td class="none" colspan="5">${esc(empty)}</td></tr>`;
}
function timeline(states) {  // one labelled bar per state: name, duration; width grows with the log of the duration
  return `<div class="timeline">` + (states || []).map(s => {
    const running = s.status === "ACTIVE" && s.started ? (Date.now() - Date.parse(s.started)) / 1000 : null;
    const d = s.duration ?? running;
    const width = Math.max(6, Math.min(220, 14 * Math.log2(2 + (d || 0) * 4)));
    return `<div class="seg" title="${esc(s.name)}: ${esc(s.status)}, ${secs(d)}"><div class="bar ${esc(s.status)}" style="width:${width}px"></div>` +
           `<div class="lbl"><b>${esc(s.name)}</b><br>${s.status === "ACTIVE" ? "running " + secs(running) : secs(s.duration)}</div></div>`;
  }).join("") + `</div>`;
}
function status(r) {
  if (r.status !== "FAILED") return `<td class="${esc(r.status)}">${esc(r.status)}</td>`;
  const f = r.failure || {};
  const where = f.state ? ` in ${esc(f.state)}` : "";
  const why = [f.error, f.message].filter(Boolean).join(": ") || r.error;
  return `<td class="FAILED"><b>FAILED${where}</b><div class="reason">${esc(why)}</div></td>`;
}
function engine(e) {
  const box = document.getElementById("engine");
  if (e == null) { box.className = "banner none"; box.textContent = "flows run on the Globus service (no local engine worker)"; return; }
  if (e.error) { box.className = "banner bad"; box.textContent = "engine worker: unknown (" + e.error + ")"; return; }
  const oldest = e.active_runs && e.oldest_active_age_s != null ? `; oldest active state ${secs(e.oldest_active_age_s)}` : "";
  box.className = "banner " + (e.up || e.state === "down" && !e.active_runs ? "ok" : "bad");
  box.textContent = "engine worker " + e.summary + oldest;
}
async function refresh() {
  try {
    const data = await (await fetch("api/status")).json();
    engine(data.engine);
    rows("runs", data.runs, r => `<tr><td>${esc(r.run_id).slice(0, 8)}</td><td>${esc(r.label)}</td>${status(r)}<td>${esc(r.current_state)}</td><td>${timeline(r.timeline)}</td></tr>`, "no runs yet");
    const waiting = (data.watcher && data.watcher.inactive) || [];
    document.getElementById("inactive").innerHTML = waiting.length ? "<b>" + waiting.length + " run(s) INACTIVE, waiting for a person</b>" +
      waiting.map(w => `<div><code>${esc(w.run_id)}</code> ${esc(w.reason)}</div>`).join("") : "";
    rows("journal", data.journal, j => `<tr><td>${esc(j.scan || j.path)}</td><td class="${esc(j.state)}">${esc(j.state)}</td><td>${esc(j.run_id).slice(0, 8)}</td><td>${esc(j.age)}</td><td>${esc(j.reason || j.detail)}</td></tr>`, "no scans journalled yet (the watcher has not seen any)");
    rows("models", data.models, m => `<tr><td>${esc(m.version)}</td><td>${esc(m.parent)}</td><td>${m.val_loss == null ? "" : Number(m.val_loss).toFixed(4)}</td><td>${m.ssim == null ? "" : Number(m.ssim).toFixed(3)}</td><td>${m.best ? "★" : ""}</td></tr>`, "no models yet");
    document.getElementById("edge").textContent = data.edge && Object.keys(data.edge).length ? JSON.stringify(data.edge, null, 1)
      : "no edge status (the edge service, ptychoflow edge serve, has not reported here)";
    document.getElementById("updated").textContent = "updated " + new Date().toTimeString().slice(0, 8) + " · " + (data.runs.length ?? 0) + " runs";
  } catch (e) { document.getElementById("updated").textContent = "dashboard API unreachable: " + e; }
}
refresh(); setInterval(refresh, REFRESH_MS);
</script></body></html>"""


def create_app(sources: DashboardSources, *, refresh_ms: int = 2000) -> FastAPI:
    app = FastAPI(title="ptychoflow dashboard", docs_url=None, redoc_url=None)
    page = PAGE.replace("REFRESH_MS", str(int(refresh_ms)))
    registry = metrics_registry(sources)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/status")
    def status() -> JSONResponse:
        return JSONResponse(sources.snapshot())

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render_metrics(registry), media_type="text/plain; version=0.0.4")

    return app
