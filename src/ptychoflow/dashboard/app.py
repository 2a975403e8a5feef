"""The dashboard web app: one auto-refreshing page, a JSON API, and /metrics."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ptychoflow.dashboard.metrics import render_metrics
from ptychoflow.dashboard.sources import DashboardSources

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ptychoflow dashboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222} h2{margin-top:1.4em}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
.SUCCEEDED{color:#2e7d32}.FAILED{color:#c62828}.ACTIVE{color:#f9a825}.ENDED{color:#777}
.INACTIVE,.inactive{color:#6a1b9a;font-weight:bold}
#inactive{background:#fff3cd;border:1px solid #e0b100;padding:6px 10px;margin:8px 0} #inactive:empty{display:none}
.bar{display:inline-block;height:10px;background:#5c6bc0;margin-right:2px;vertical-align:middle}
.err{color:#c62828}
</style></head><body>
<h1>ptychoflow</h1><p id="updated">loading…</p><div id="inactive"></div>
<h2>Flow runs</h2><table id="runs"><thead><tr><th>run</th><th>label</th><th>status</th><th>state</th><th>timeline</th></tr></thead><tbody></tbody></table>
<h2>Watcher journal</h2><table id="journal"><thead><tr><th>scan</th><th>state</th><th>run</th><th>unchanged for</th><th>detail</th></tr></thead><tbody></tbody></table>
<h2>Model registry</h2><table id="models"><thead><tr><th>version</th><th>parent</th><th>val loss</th><th>SSIM</th><th>best</th></tr></thead><tbody></tbody></table>
<h2>Edge</h2><pre id="edge"></pre>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function rows(id, items, render) {
  const body = document.querySelector(`#${id} tbody`);
  if (!Array.isArray(items)) { body.innerHTML = `<tr><td class="err" colspan="5">${esc(items && items.error)}</td></tr>`; return; }
  body.innerHTML = items.map(render).join("");
}
function bars(timeline) {
  return (timeline || []).map(s => `<span class="bar" title="${esc(s.name)}: ${s.duration == null ? "running" : s.duration.toFixed(1) + " s"}"
     style="width:${Math.max(3, Math.min(200, 4 * Math.log2(1 + (s.duration || 0.5) * 10)))}px"></span>`).join("");
}
async function refresh() {
  try {
    const data = await (await fetch("api/status")).json();
    rows("runs", data.runs, r => `<tr><td>${esc(r.run_id).slice(0, 8)}</td><td>${esc(r.label)}</td><td class="${esc(r.status)}">${esc(r.status)}</td><td>${esc(r.current_state)}</td><td>${bars(r.timeline)}</td></tr>`);
    const waiting = (data.watcher && data.watcher.inactive) || [];
    document.getElementById("inactive").innerHTML = waiting.length ? "<b>" + waiting.length + " run(s) INACTIVE, waiting for a person</b>" +
      waiting.map(w => `<div><code>${esc(w.run_id)}</code> ${esc(w.reason)}</div>`).join("") : "";
    rows("journal", data.journal, j => `<tr><td>${esc(j.scan || j.path)}</td><td class="${esc(j.state)}">${esc(j.state)}</td><td>${esc(j.run_id).slice(0, 8)}</td><td>${esc(j.age)}</td><td>${esc(j.reason || j.detail)}</td></tr>`);
    rows("models", data.models, m => `<tr><td>${esc(m.version)}</td><td>${esc(m.parent)}</td><td>${m.val_loss == null ? "" : Number(m.val_loss).toFixed(4)}</td><td>${m.ssim == null ? "" : Number(m.ssim).toFixed(3)}</td><td>${m.best ? "★" : ""}</td></tr>`);
    document.getElementById("edge").textContent = JSON.stringify(data.edge, null, 1);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString() + " · " + (data.runs.length ?? 0) + " runs";
  } catch (e) { document.getElementById("updated").textContent = "dashboard API unreachable: " + e; }
}
refresh(); setInterval(refresh, REFRESH_MS);
</script></body></html>"""


def create_app(sources: DashboardSources, *, refresh_ms: int = 2000) -> FastAPI:
    app = FastAPI(title="ptychoflow dashboard", docs_url=None, redoc_url=None)
    page = PAGE.replace("REFRESH_MS", str(int(refresh_ms)))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/status")
    def status() -> JSONResponse:
        return JSONResponse(sources.snapshot())

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render_metrics(sources.snapshot()), media_type="text/plain; version=0.0.4")

    return app
