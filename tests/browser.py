"""Headless Chromium for page tests (Debian's chromium driven by playwright), and a
uvicorn server in a thread on a free local port."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.skip("chromium not installed (make test installs it with apt-get; elsewhere: apt-get install chromium)")
    return path


@contextmanager
def browser_page() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install 'ptychoflow[dev]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
