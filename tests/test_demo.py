"""The whole pipeline in one command (reduced), and resuming a demo that was killed halfway."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import subprocess_env
from console_script import ptychoflow

# Reduced: two scans on a smaller object, a few rPIE iterations and a short training.
REDUCED = ["--scans", "2", "--iterations", "20", "--epochs", "3", "--train-time-limit", "40", "--object-size", "192",
           "--ssim-tolerance", "0", "--pretrain-time", "0"]  # no first model: nn.start has its own tests


def _demo(out: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ptychoflow", "demo", "--out", str(out), *REDUCED],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _ptychoflow_processes_under(out: Path) -> list[str]:
    """Any process still running whose command line mentions this demo directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(out) in cmd and _alive(int(proc.name)):
                found.append(cmd)
    return found


def _runs(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / "state" / "runs.sqlite") as db:
        return db.execute("SELECT run_id, status FROM runs").fetchall()


def _engine_gone(out: Path, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _ptychoflow_processes_under(out):
            return True
        time.sleep(0.2)
    return False


DEMO_OUTPUT_ENV = "PTYCHOFLOW_DEMO_OUTPUT"  # .ci/run: the demo `make demo` just ran, checked instead of a second one


def _finished_demo(tmp_path: Path) -> Path:
    """The output of a demo that ran to its end: the one `make demo` left in $PTYCHOFLOW_DEMO_OUTPUT
    (the README's first command, run by .ci/run just before `make test`), else a reduced one run here."""
    given = os.environ.get(DEMO_OUTPUT_ENV)
    if given:
        out = Path(given)
        assert (out / "report.html").exists(), f"${DEMO_OUTPUT_ENV}={given}: no finished demo there"
        return out
    out = tmp_path / "demo"
    proc = _demo(out)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    return out


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = _finished_demo(tmp_path)
    scans = sorted(p.stem for p in (out / "acquisition").glob("scan_*.h5"))
    runs = _runs(out)
    assert len(scans) >= 2 and len(runs) == len(scans), runs
    assert all(status == "SUCCEEDED" for _, status in runs), runs
    # The best model was activated on the edge...
    listed = json.loads(_installed_cli("models", "list", "--profile", str(out), "--json"))
    best = [model["version"] for model in listed if model["is_best"]]
    manifest = json.loads((out / "edge" / "model" / "manifest.json").read_text())
    assert best == [manifest["version"]]
    # ...with the stitching weight it was trained with, byte for byte (one field, training to edge)
    trained = out / "hpc" / "registry" / "versions" / manifest["version"] / "stitch_weight.npy"
    assert manifest["stitch_weight"]["file"] == "stitch_weight.npy"
    assert (out / "edge" / "model" / "stitch_weight.npy").read_bytes() == trained.read_bytes()
    # ...and with the probe it was trained for (rPIE's), for the polish
    assert manifest["probe"]["file"] == "probe.npy" and manifest["probe_measured"]
    # The edge served live images for the last scan, with a model from the registry, and
    # polished the image when the scan ended (the network's image kept beside it).
    import h5py

    with h5py.File(out / "edge" / "mosaics" / f"{scans[-1]}.h5") as f:
        assert any(model["version"] in str(f.attrs["models"]) for model in listed) and f.attrs["n_frames"] > 100
        assert json.loads(f.attrs["polish"])["sweeps"] == 10 and f["network_phase"].shape == f["phase"].shape
    report = (out / "report.html").read_text()
    for section in ("summary", "scans", "flow-runs", "edge", "models"):
        assert f'id="{section}"' in report
    assert report.count("data:image/png;base64") >= 5  # truth, rPIE, live for the last scan; truth, rPIE for the first
    assert _engine_gone(out), _ptychoflow_processes_under(out)
    # `ptychoflow models list --profile <demo profile>` lists the models the demo's flow runs trained
    trained_versions = sorted(run["output"]["TrainModel"]["details"]["results"][0]["output"]["version"]
                              for run in json.loads(_installed_cli("runs", "list", "--profile", str(out), "--json"))
                              if "TrainModel" in (run["output"] or {}))
    assert trained_versions and [model["version"] for model in listed] == trained_versions


def _installed_cli(*args: str) -> str:
    """The console script users run; its stdout."""
    return ptychoflow(*args).stdout


@pytest.mark.slow
def test_killed_demo_resumes_without_repeating_work(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    journal = out / "state" / "watcher.sqlite"
    deadline = time.monotonic() + 600
    first_done = False
    while time.monotonic() < deadline and not first_done:  # wait for scan 1's run to succeed
        time.sleep(1)
        if journal.exists():
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                first_done = bool(db.execute("SELECT 1 FROM scans WHERE path LIKE '%scan_0001.h5' AND state='succeeded'").fetchone())
    assert first_done, "scan_0001's run did not finish"
    product = next((out / "hpc" / "products" / "scan_0001").glob("*.recon.h5"))
    product_mtime = product.stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)  # the user's terminal dies: demo, edge and watcher at once
    proc.wait(30)

    again = _demo(out)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    assert "resuming" in output and "scan_0001: already acquired" in output
    runs = _runs(out)
    assert len(runs) == 2 and all(status == "SUCCEEDED" for _, status in runs), runs  # scan 1 not re-run
    assert product.stat().st_mtime_ns == product_mtime  # its reconstruction was not redone
    assert (out / "report.html").exists()
    assert _engine_gone(out), _ptychoflow_processes_under(out)
