"""Hot model swap: watch the model directory, load and check new models in the background,
and hand the inference loop a new model only between batches.

``manifest.json`` is the commit point (``ptychoflow.artifact.publish_model`` writes it last
by an atomic rename), so the watcher polls only the manifest's identity (inode, size,
mtime): cheap, and correct on network filesystems where inotify is not. A model that fails
any check is refused with one log line and the serving model stays.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ptychoflow.artifact import MANIFEST_FILENAME, read_manifest, verified_model_bytes
from ptychoflow.errors import InputError
from ptychoflow_edge.inference import LoadedModel, ModelRejected, load_model

log = logging.getLogger("ptychoflow.edge.model")


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelManager:
    def __init__(self, model_dir: Path, *, providers: list[str], intra_op_threads: int, poll_s: float = 0.25,
                 on_swap: Callable[[str | None, str], None] | None = None,
                 on_refuse: Callable[[], None] | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.poll_s = poll_s
        self._on_swap = on_swap
        self._on_refuse = on_refuse
        self._active: LoadedModel | None = None
        self._pending: LoadedModel | None = None
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=20)
        self.loading = False

    # -- called by the inference loop ---------------------------------------------------
    def current(self) -> LoadedModel | None:
        """The model to use for the next batch; a checked pending model is swapped in here."""
        with self._lock:
            if self._pending is not None:
                old = self._active.version if self._active else None
                self._active, self._pending = self._pending, None
                new = self._active
                self._event("activated", new.version, f"serving on {new.providers[0]}")
                log.info("model %s now serving (was %s)", new.version, old or "none")
                if self._on_swap:
                    self._on_swap(old, new.version)
            return self._active

    @property
    def serving(self) -> LoadedModel | None:
        return self._active

    # -- background ---------------------------------------------------------------------
    def check_once(self) -> None:
        """Load the manifest if it changed since last time (the watcher thread calls this)."""
        identity = _identity(self.model_dir / MANIFEST_FILENAME)
        if identity is None or identity == self._seen:
            return
        self._seen = identity
        self.loading = True
        try:
            self._load()
        finally:
            self.loading = False

    def _load(self) -> None:
        try:
            manifest, blob = verified_model_bytes(self.model_dir)
        except InputError as exc:
            self._refuse(self._version_hint(), str(exc))
            return
        current = self._pending or self._active
        if current is not None and (current.version, current.manifest.sha256) == (manifest.version, manifest.sha256):
            return  # same model rewritten: nothing to do
        started = time.perf_counter()
        try:
            model = load_model(manifest, blob, self.model_dir, providers=self.providers,
                               intra_op_threads=self.intra_op_threads)
        except ModelRejected as exc:
            self._refuse(manifest.version, str(exc))
            return
        log.info("model %s loaded and checked in %.2f s; swapping at the next batch", manifest.version,
                 time.perf_counter() - started)
        with self._lock:
            self._pending = model
        self._event("checked", manifest.version, "passed checks")

    def _version_hint(self) -> str:
        """The version a broken manifest claims, for the log line ("?" if unreadable)."""
        try:
            return str(read_manifest(self.model_dir).version)
        except InputError:
            return "?"

    def _refuse(self, version: str, reason: str) -> None:
        serving = self._active.version if self._active else "none"
        log.error("refused model %s: %s (still serving %s)", version, reason, serving)
        self._event("refused", version, reason)
        if self._on_refuse:
            self._on_refuse()

    def _event(self, kind: str, version: str, detail: str) -> None:
        self.events.append({"at": time.time(), "event": kind, "version": version, "detail": detail})

    def start(self) -> None:
        self.check_once()  # a model already in place is ready before the first frame
        self._thread = threading.Thread(target=self._run, name="edge-model-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive any surprise
                log.exception("model watcher error")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
