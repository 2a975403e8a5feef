"""Run the check: install what is missing, run each section in its own time-boxed process,
write gpu_check.json and print one table.

A section runs as a child process (its own process group) so that a hung CUDA call, a crash
in a native library or an overrun costs that section only: at its box the group is stopped,
and the figures it had saved so far still reach the table.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from gpucheck import wheels
from gpucheck.record import Context, Record, Skip
from gpucheck.sections import DRY_BOX_S, MIN_BOX_S, SECTIONS, Section, by_name
from ptychoflow.fs import atomic_write_json, atomic_write_text

REPO = wheels.REPO
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
BUDGET_S = 480.0  # the 8 minutes; one device command may run 10
STOP_GRACE_S = 5.0


def section_env(site: Path | None, *, dry: bool = False) -> dict[str, str]:
    """The children's environment: installed wheels first, then this tree's packages. The dry
    run keeps to one CPU thread: it runs in CI beside other jobs."""
    env = dict(os.environ)
    if dry:
        env["OMP_NUM_THREADS"] = "1"
    paths = [str(site)] if site else []
    paths += [str(REPO / "src"), str(REPO / "edge"), str(REPO / "benchmarks"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    return env


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(path: Path, lines: int = 25) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def run_section(section: Section, out: Path, *, box_s: float, dry: bool, env: dict[str, str]) -> dict[str, Any]:
    """Run one section in a child process; its record, with the status the parent saw."""
    log = out / "logs" / f"{section.name}.log"
    record_path = out / "sections" / f"{section.name}.json"
    record_path.unlink(missing_ok=True)
    deadline = time.time() + box_s - 2 * STOP_GRACE_S  # the section plans to end before its box does
    command = [sys.executable, str(SCRIPT), str(out), "--section", section.name, "--module", section.module_name,
               "--deadline", f"{deadline:.3f}"]
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command + (["--dry"] if dry else []), stdout=handle, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO, start_new_session=True)
        try:
            returncode: int | None = process.wait(box_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            returncode = None
    try:
        doc = json.loads(record_path.read_text())
    except (OSError, ValueError):
        doc = {"name": section.name, "rows": [], "data": {}, "images": []}
    doc.update(title=section.title, box_s=round(box_s), seconds=round(time.perf_counter() - started, 1),
               log=str(log.relative_to(out)))
    if returncode is None:
        doc.update(status="timed_out", reason=f"stopped at its {box_s:.0f} s time box; rows above are what it had")
    elif returncode != 0 or doc.get("status") not in ("ok", "skipped"):
        tail = _log_tail(log)
        doc.update(status="failed", reason=doc.get("reason") or (tail[-1] if tail else f"exit status {returncode}"),
                   log_tail=tail)
    return doc


def run_check(out: Path, *, dry: bool, budget_s: float = BUDGET_S, only: list[str] | None = None,
              wheel_dir: Path = wheels.WHEEL_DIR) -> int:
    """The whole check; returns the exit status (1 if a section failed or timed out)."""
    started = time.time()
    for sub in ("logs", "sections"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    chosen = [by_name(name) for name in only] if only else list(SECTIONS)
    print(f"ptychoflow GPU check{' (dry run: CPU, tiny sizes)' if dry else ''}: {len(chosen)} sections, "
          f"budget {budget_s:.0f} s, output {out}", flush=True)
    bootstrap = wheels.install(wheel_dir)
    print(f"wheels: {len(bootstrap.installed)} installed from {wheel_dir} in {bootstrap.seconds:.1f} s"
          + (f" ({', '.join(bootstrap.installed)})" if bootstrap.installed else "")
          + (f"; unavailable: {', '.join(bootstrap.unavailable)}" if bootstrap.unavailable else ""), flush=True)
    env = section_env(bootstrap.target, dry=dry)
    deadline = started + budget_s
    results: dict[str, dict[str, Any]] = {}
    for index, section in enumerate(chosen):
        later = MIN_BOX_S * (len(chosen) - index - 1)
        box = min(DRY_BOX_S if dry else section.box_s, deadline - time.time() - later)
        if box < MIN_BOX_S:
            results[section.name] = {"name": section.name, "title": section.title, "status": "skipped", "rows": [],
                                     "reason": f"no time left in the {budget_s:.0f} s budget", "images": []}
        else:
            results[section.name] = run_section(section, out, box_s=box, dry=dry, env=env)
        result = results[section.name]
        print(f"[{section.name}] {result['status']} in {result.get('seconds', 0):.0f} s"
              + (f": {result['reason']}" if result.get("reason") else ""), flush=True)
    document = {
        "check": "ptychoflow GPU check", "dry": dry, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1), "budget_s": budget_s, "wheels": bootstrap.to_json(),
        "sections": list(results.values()),  # a list: the JSON keeps the order they ran in
    }
    table = format_table(document)
    document["table"] = table
    atomic_write_json(out / "gpu_check.json", document)
    atomic_write_text(out / "gpu_check.txt", table + "\n")
    print(table)
    return 1 if any(result["status"] in ("failed", "timed_out") for result in results.values()) else 0


def format_table(document: dict[str, Any]) -> str:
    """One table: a line per figure, grouped by section, then a line per section status."""
    header = ("section", "measure", "figure", "reference / goal", "verdict")
    lines: list[tuple[str, ...]] = []
    for result in document["sections"]:
        first = result["name"]
        for row in result.get("rows", []):
            lines.append((first, row["measure"], row["text"], row["reference"], row["verdict"]))
            first = ""
        if result["status"] != "ok" or not result.get("rows"):
            lines.append((first, f"({result['status']})", result.get("reason", ""), "", ""))
    caps = (10, 34, 60, 40, 8)
    widths = [min(cap, max(len(str(line[i])) for line in [header, *lines])) for i, cap in enumerate(caps)]

    def fit(cells: tuple[str, ...]) -> str:
        out = []
        for cell, width in zip(cells, widths):
            cell = str(cell)
            out.append(cell if len(cell) <= width else cell[: width - 1] + "…")
        return "  ".join(c.ljust(w) for c, w in zip(out, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    elapsed = f"{document['elapsed_s']:.0f} s of {document['budget_s']:.0f} s"
    title = f"ptychoflow GPU check{' (dry run)' if document['dry'] else ''}, {document['started']}, {elapsed}"
    return "\n".join([title, fit(header), rule, *(fit(line) for line in lines)])


def section_main(name: str, module_name: str, out: Path, deadline: float, dry: bool) -> int:
    """Inside the child process: run one section's module and save its record."""
    record = Record(out / "sections" / f"{name}.json", name)
    context = Context(out, dry, deadline)
    try:
        module = importlib.import_module(module_name)
        module.run(record, context)
    except Skip as skip:
        record.finish("skipped", str(skip))
        return 0
    except ModuleNotFoundError as exc:  # a package neither on the machine nor among the wheels
        record.finish("skipped", f"needs {exc.name}, which is not installed here ({exc})")
        return 0
    except BaseException as exc:
        record.set("traceback", traceback.format_exc())
        record.finish("failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        traceback.print_exc()
        return 1
    record.finish("ok")
    return 0
