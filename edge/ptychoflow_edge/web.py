"""The operator page and its JSON/metrics endpoints (FastAPI, served by uvicorn in a thread).

``/`` live page · ``/status`` JSON · ``/metrics`` Prometheus · ``/mosaic.png?scan=ID`` ·
``/scans``. Bound to 127.0.0.1 unless the profile says otherwise: it has no authentication.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from ptychoflow_edge.service import EdgeService

NO_CACHE = {"Cache-Control": "no-store"}


def create_app(service: "EdgeService") -> FastAPI:
    app = FastAPI(title="ptychoflow edge", docs_url=None, redoc_url=None)
    page = resources.files("ptychoflow_edge").joinpath("page.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/status")
    def status() -> dict[str, Any]:
        return service.status()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/scans")
    def scans() -> list[dict[str, Any]]:
        return service.mosaics.summaries()

    @app.get("/mosaic.png")
    def mosaic(scan: str | None = None) -> Response:
        state = service.mosaics.get(scan)
        png = state.png() if state else None
        if png is None:
            raise HTTPException(404, f"no mosaic for scan {scan or '(latest)'} yet")
        return Response(png, media_type="image/png", headers=NO_CACHE)

    return app


class WebServer:
    """uvicorn in a daemon thread; port 0 picks a free port, read back after start."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start on {self.host}:{self.port} "
                                   "(port in use? set edge.http_port or --port)")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; start() reports it
            pass

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
