"""The local Transfer action family: transfer, delete, ls, stat, mkdir on local collections.

Request bodies and result ``details`` follow https://transfer.actions.globus.org/* (the
Transfer action provider pages of docs.globus.org) so a flow reads the same fields here and on
Globus (``details.status``, ``files_transferred``, ``DATA``, ``total``...), and a request means
the same: ``verify_checksum`` and ``sync_level`` as Transfer reads them.

All five are safe to repeat, so after an engine crash interrupted work is started again
(at-least-once, ``RERUNS``): a transfer writes the same files again (or, with a
``sync_level``, skips the ones already there), a repeated delete accepts that what it removed
is gone, mkdir accepts an existing directory, ls and stat only read. A cancelled transfer stops
at the next file boundary; a file being copied is written under a hidden temporary name, so no
partial file ever appears under a final name.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat as stat_module
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ptychoflow.flowengine.providers.base import ActionFailed, ActionUnableToRun, ThreadedProvider
from ptychoflow.flowengine.providers.local_collections import collection_root, resolve
from ptychoflow.flowengine.providers.copying import (
    CopyError, CopyOptions, CopyStats, copy_files, parse_sync_level, tree_pairs,
)
from ptychoflow.fs import sha256_text

BASE_URL = "https://transfer.actions.globus.org"
RERUNS = 5  # starts after a worker crash before an interrupted action is given up as WorkerLost


def _require(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise ActionUnableToRun(f"request body: missing field {key!r}")
    return body[key]


def _failed(action_id: str, code: str, description: str, **extra: Any) -> ActionFailed:
    return ActionFailed({"status": "FAILED", "task_id": action_id, "nice_status": code,
                         "fatal_error": {"code": code, "description": description},
                         "description": description, **extra})


def _options(body: dict[str, Any]) -> CopyOptions:
    """``verify_checksum`` (default false) and ``sync_level`` (default none), checked as Transfer does."""
    verify = body.get("verify_checksum", False)
    if not isinstance(verify, bool):
        raise ActionUnableToRun(f"request body: verify_checksum must be true or false, not {verify!r}")
    try:
        return CopyOptions(verify_checksum=verify, sync_level=parse_sync_level(body.get("sync_level")))
    except ValueError as exc:
        raise ActionUnableToRun(f"request body: {exc}") from None


class TransferProvider(ThreadedProvider):
    """``/transfer``: atomic copies between local collections, verified when the request asks."""

    url = f"{BASE_URL}/transfer"
    reruns = RERUNS

    def check(self, body: dict[str, Any]) -> None:
        collection_root(self.env, _require(body, "source_endpoint"), "source_endpoint")
        collection_root(self.env, _require(body, "destination_endpoint"), "destination_endpoint")
        _options(body)
        items = _require(body, "DATA")
        if not isinstance(items, list) or not items:
            raise ActionUnableToRun("request body: DATA must be a non-empty list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "source_path" not in item or "destination_path" not in item:
                raise ActionUnableToRun(f"request body: DATA[{i}] needs source_path and destination_path")
            resolve(self.env, body["source_endpoint"], item["source_path"], f"DATA[{i}].source_path")
            resolve(self.env, body["destination_endpoint"], item["destination_path"], f"DATA[{i}].destination_path")

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        stats = CopyStats()
        tag = sha256_text(action_id)[:12]
        options = _options(body)
        try:
            copy_files(self._pairs(body), stats, tag, options, stop=lambda: self.stopping(action_id))
        except CopyError as exc:
            raise _failed(action_id, exc.code, str(exc), files_transferred=stats.files_transferred) from None
        return {
            "status": "SUCCEEDED", "task_id": action_id, "label": body.get("label"), "type": "TRANSFER",
            "source_endpoint_id": body["source_endpoint"], "destination_endpoint_id": body["destination_endpoint"],
            "files": stats.files, "files_transferred": stats.files_transferred, "files_skipped": stats.files_skipped,
            "bytes_transferred": stats.bytes_transferred, "verify_checksum": options.verify_checksum,
            "sync_level": options.sync_level,
            "checksum_retries": stats.checksum_retries, "nice_status": None, "fatal_error": None,
        }


    def _pairs(self, body: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
        """Every (source file, destination file) of the request, directories expanded."""
        for i, item in enumerate(body["DATA"]):
            source = resolve(self.env, body["source_endpoint"], item["source_path"], f"DATA[{i}].source_path")
            target = resolve(self.env, body["destination_endpoint"], item["destination_path"],
                             f"DATA[{i}].destination_path")
            if source.is_dir():
                if not item.get("recursive", False):
                    raise CopyError("NOT_A_FILE", f"{item['source_path']}: is a directory; set recursive: true")
                yield from tree_pairs(source, target)
            elif source.exists():
                yield source, target
            else:
                raise CopyError("FILE_NOT_FOUND", f"{item['source_path']}: no such file on {body['source_endpoint']}")


class _SinglePathProvider(ThreadedProvider):
    """Shared body handling for the one-collection operations (endpoint_id + path)."""

    reruns = RERUNS

    def check(self, body: dict[str, Any]) -> None:
        collection_root(self.env, _require(body, "endpoint_id"), "endpoint_id")
        resolve(self.env, body["endpoint_id"], _require(body, "path"), "path")

    def target(self, body: dict[str, Any], path: str | None = None) -> Path:
        return resolve(self.env, body["endpoint_id"], path or body["path"], "path")


class DeleteProvider(ThreadedProvider):
    """``/delete``: remove files or (with recursive) directories of collection ``endpoint``."""

    url = f"{BASE_URL}/delete"
    reruns = RERUNS

    def check(self, body: dict[str, Any]) -> None:
        if "endpoint_id" in body and "endpoint" not in body:
            raise ActionUnableToRun("request body: the Delete action takes the collection as 'endpoint', "
                                    "not 'endpoint_id'")
        collection_root(self.env, _require(body, "endpoint"), "endpoint")
        if not isinstance(_require(body, "DATA"), list):
            raise ActionUnableToRun("request body: DATA must be a list of {path}")

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = body["endpoint"]
        root = collection_root(self.env, endpoint, "endpoint").resolve()
        # Repeated after a crash, what the first run removed is simply gone.
        missing_ok = body.get("ignore_missing", False) or self.attempt(action_id) > 1
        deleted = 0
        for i, item in enumerate(body["DATA"]):
            target = resolve(self.env, endpoint, item.get("path", ""), f"DATA[{i}].path")
            if target == root:
                raise _failed(action_id, "PERMISSION_DENIED", "refusing to delete a collection's root")
            if target.is_dir():
                if not body.get("recursive", False):
                    raise _failed(action_id, "NOT_A_FILE", f"{item['path']}: is a directory; set recursive: true")
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            elif not missing_ok:
                raise _failed(action_id, "FILE_NOT_FOUND", f"{item['path']}: no such file")
            else:
                continue
            deleted += 1
        return {"status": "SUCCEEDED", "task_id": action_id, "type": "DELETE", "files_deleted": deleted}


def _entry(path: Path) -> dict[str, Any]:
    """A file document of the Transfer API (``ls`` entries, ``stat`` details)."""
    info = path.lstat()
    kind = "dir" if stat_module.S_ISDIR(info.st_mode) else "link" if stat_module.S_ISLNK(info.st_mode) else "file"
    return {
        "DATA_TYPE": "file", "name": path.name, "type": kind, "size": info.st_size,
        "last_modified": datetime.fromtimestamp(info.st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00"),
        "permissions": f"{info.st_mode & 0o7777:04o}", "user": _owner(info.st_uid), "group": _group(info.st_gid),
        "link_target": os.readlink(path) if kind == "link" else None, "link_group": None, "link_last_modified": None,
        "link_size": None, "link_user": None,
    }


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class LsProvider(_SinglePathProvider):
    """``/ls``: a directory listing (``file_list``: ``DATA``, ``length``, ``total``), with the
    Transfer API's ``limit``/``offset`` paging and ``show_hidden``."""

    url = f"{BASE_URL}/ls"

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.target(body)
        if not target.is_dir():
            raise _failed(action_id, "NOT_A_DIRECTORY", f"{body['path']}: not a directory")
        entries = [_entry(p) for p in sorted(target.iterdir())]
        if not body.get("show_hidden", True):
            entries = [e for e in entries if not e["name"].startswith(".")]
        offset, limit = int(body.get("offset", 0)), body.get("limit")
        page = entries[offset:] if limit is None else entries[offset:offset + int(limit)]
        return {"DATA_TYPE": "file_list", "path": body["path"], "endpoint": body["endpoint_id"], "absolute_path": None,
                "DATA": page, "length": len(page), "total": len(entries), "rename_supported": True,
                "symlink_supported": True}


class StatProvider(_SinglePathProvider):
    """``/stat``: one path's file document. A path that does not exist is a successful action
    whose details say ``code: NotFound``, as the Globus move and two-stage examples read it."""

    url = f"{BASE_URL}/stat"

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.target(body)
        if not target.exists() and not target.is_symlink():
            return {"code": "NotFound", "message": f"{body['path']}: no such file or directory",
                    "path": body["path"], "endpoint": body["endpoint_id"]}
        return _entry(target)


class MkdirProvider(_SinglePathProvider):
    """``/mkdir``: create a directory (parents included; existing is fine)."""

    url = f"{BASE_URL}/mkdir"

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.target(body)
        if target.exists() and not target.is_dir():
            raise _failed(action_id, "EXISTS", f"{body['path']}: exists and is not a directory")
        os.makedirs(target, exist_ok=True)
        return {"code": "DirectoryCreated", "path": body["path"], "endpoint": body["endpoint_id"]}


FACTORIES = {cls.url: cls for cls in (TransferProvider, DeleteProvider, LsProvider, StatProvider, MkdirProvider)}
