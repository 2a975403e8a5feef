"""Hot model swap: watch the model directory, load and check new models in the background,
and hand the inference loop a new model only between batches.

``manifest.json`` is the commit point (``ptychoflow.artifact.publish_model`` writes it last
by an atomic rename), so the watcher polls only the manifest's identity (inode, size,
mtime): cheap, and correct on network filesystems where inotify is not. A model that fails
any check is refused with one log line and the serving model stays.

A refused model never stays in the model directory (the active slot): the last model that
passed the checks, which the manager copies aside (``EdgeLayout.last_good_dir``) when it
accepts one, is put back, or the slot is emptied when there is none. So a restart serves the
last good model, never a refused one. Every event carries the model's sha256, so whoever
activated a model (``ptychoflow_edge.activation``) can wait for the verdict on that file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ptychoflow.artifact import (
    MANIFEST_FILENAME, MODEL_DIR_FILES, ModelManifest, publish_from, read_manifest, verified_model_bytes,
)
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
                 on_refuse: Callable[[], None] | None = None, last_good_dir: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.last_good_dir = Path(last_good_dir) if last_good_dir else self.model_dir.with_name("model-last-good")
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
                self._event("activated", new.version, f"serving on {new.providers[0]}", new.manifest.sha256)
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
            version, sha256 = self._claims()
            current = self._pending or self._active
            if current is not None and sha256 == current.manifest.sha256:
                # The manifest of the model already serving, over files that no longer match it:
                # a new model is arriving (its files land before its manifest). Nothing to refuse;
                # its manifest is the next change.
                log.info("model files changing under the manifest of %s; waiting for the next manifest", version)
                return
            self._refuse(version, sha256, str(exc))
            return
        current = self._pending or self._active
        if current is not None and (current.version, current.manifest.sha256) == (manifest.version, manifest.sha256):
            return  # same model rewritten (or the last good one put back): nothing to do
        started = time.perf_counter()
        try:
            model = load_model(manifest, blob, self.model_dir, providers=self.providers,
                               intra_op_threads=self.intra_op_threads)
        except ModelRejected as exc:
            self._refuse(manifest.version, manifest.sha256, str(exc))
            return
        except Exception as exc:  # a check that trips on a model nobody foresaw is still a refusal
            self._refuse(manifest.version, manifest.sha256, f"unusable model: {type(exc).__name__}: {exc}")
            return
        log.info("model %s loaded and checked in %.2f s; swapping at the next batch", manifest.version,
                 time.perf_counter() - started)
        self._keep_as_last_good(manifest)
        with self._lock:
            self._pending = model
        self._event("checked", manifest.version, "passed checks", manifest.sha256)

    def _claims(self) -> tuple[str, str | None]:
        """(version, sha256) a broken model's manifest claims, for the log and the event."""
        try:
            manifest = read_manifest(self.model_dir)
        except InputError:
            return "?", None
        return str(manifest.version), manifest.sha256

    def _refuse(self, version: str, sha256: str | None, reason: str) -> None:
        serving = self._active.version if self._active else "none"
        log.error("refused model %s: %s (still serving %s)", version, reason, serving)
        self._clear_slot(sha256)  # before the event: whoever sees the verdict finds the slot clean
        self._event("refused", version, reason, sha256)
        if self._on_refuse:
            self._on_refuse()

    # -- the last good model ------------------------------------------------------------
    def _keep_as_last_good(self, manifest: ModelManifest) -> None:
        """Copy an accepted model aside (manifest last), for restores and restarts."""
        try:
            publish_from(self.last_good_dir, self.model_dir, manifest)
        except (InputError, OSError) as exc:  # the slot changed meanwhile: its next model gets copied
            log.warning("could not keep model %s as the last good one: %s", manifest.version, exc)

    def _clear_slot(self, refused_sha256: str | None) -> None:
        """Put the last good model back in the slot, or empty it: a refused file never stays."""
        try:
            good, _ = verified_model_bytes(self.last_good_dir)
        except InputError:
            good = None
        try:
            if good is not None and good.sha256 != refused_sha256:
                publish_from(self.model_dir, self.last_good_dir, good)
                log.info("restored the last good model %s in %s", good.version, self.model_dir)
                return
            for name in MODEL_DIR_FILES:  # the commit point first
                (self.model_dir / name).unlink(missing_ok=True)
            log.info("emptied %s: no earlier good model to put back", self.model_dir)
        except (InputError, OSError) as exc:
            log.error("could not clear the refused model from %s: %s", self.model_dir, exc)

    def _event(self, kind: str, version: str, detail: str, sha256: str | None) -> None:
        self.events.append({"at": time.time(), "event": kind, "version": version, "sha256": sha256,
                            "detail": detail})

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
