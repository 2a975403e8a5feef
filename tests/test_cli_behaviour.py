"""The CLI's promises, through the installed console script: flows run from a scan with
--set, clean --json, Ctrl-C that says the run goes on, ambiguous run ids, defaults that
never write into the acquisition directory, writability before work, a Ctrl-C'd
reconstruction that is still saved, service logs, one error style, no 80-column wrapping."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from _recon_helpers import write_tiny
from console_script import CONSOLE_SCRIPT, console_env, needs_console_script, ptychoflow
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.worker import stop_engine
from ptychoflow.product import read_product
from ptychoflow.profile import load_profile, write_local_profile

pytestmark = needs_console_script

HOLD_FLOW = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}}


@pytest.fixture
def site(tmp_path):
    """A fresh `ptychoflow init` profile with one tiny scan in its acquisition directory."""
    root = tmp_path / "site"
    write_local_profile(root)
    write_tiny(root / "acquisition", scan_id="scan_0001")
    yield root
    stop_engine(root / "state")


def _env(site: Path, **extra: str) -> dict[str, str]:
    return console_env(PTYCHOFLOW_PROFILE=str(site), **extra)


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failing command prints last, in the one error style."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    return last


# -- flows run ------------------------------------------------------------------------------------
def test_flows_run_builds_the_input_from_a_scan_and_json_stays_clean(site, tmp_path):
    result = ptychoflow("flows", "run", "reconstruct", "--scan", str(site / "acquisition" / "scan_0001.h5"),
                        "--set", "policy.iterations=2", "--set", "policy.engine=ptychi", "--wait", "--json",
                        env=_env(site), cwd=tmp_path, timeout=300)
    run = json.loads(result.stdout)  # stdout is the run and nothing else, though --wait followed it
    assert run["status"] == "SUCCEEDED" and [s["name"] for s in run["timeline"]][:2] == ["TransferScan", "Reconstruct"]
    assert run["output"]["policy"]["iterations"] == 2 and run["output"]["scan_id"] == "scan_0001"
    created = datetime.fromisoformat(run["created"])
    assert created.tzinfo is not None and run["timeline"][0]["started"].endswith("+00:00")  # one timestamp style
    assert read_product(site / "hpc" / "products" / "scan_0001" / "scan_0001.recon.h5").iterations_run == 2


def test_set_is_checked_against_the_flow_schema(site):
    built = json.loads(ptychoflow("flows", "input", "reconstruct", "--scan", "scan_0001.h5", "--set", "scan_id=0001",
                                  "--set", "policy.alpha=0.5", env=_env(site)).stdout)
    assert built["scan_id"] == "0001" and built["policy"]["alpha"] == 0.5  # a string stays a string
    typo = ptychoflow("flows", "input", "reconstruct", "--scan", "scan_0001.h5", "--set", "policy.iteration=3",
                      env=_env(site), check=False)
    line = _error_line(typo)
    assert "--set: policy.iteration: no such field in policy (it has: alpha, batch_size, engine, " in line
    assert "iterations" in line
    wrong = ptychoflow("flows", "input", "reconstruct", "--scan", "scan_0001.h5", "--set", "policy.iterations=many",
                       env=_env(site), check=False)
    assert "'many' is not a valid integer" in _error_line(wrong)


def test_a_scan_flow_without_a_scan_or_outside_the_beamline_says_so(site, tmp_path):
    missing = ptychoflow("flows", "run", "reconstruct", env=_env(site), check=False)
    assert _error_line(missing) == "error: reconstruct runs on one scan: pass --scan FILE (or --input for full control)"
    outside = write_tiny(tmp_path, scan_id="scan_0009")
    result = ptychoflow("flows", "run", "reconstruct", "--scan", str(outside), env=_env(site), check=False)
    assert "not inside the beamline directory" in _error_line(result)
    assert not LocalBackend.from_profile(load_profile(site)).list_runs()  # nothing was started


def test_ctrl_c_while_following_says_the_run_continues_and_how_to_follow_it(site, tmp_path):
    flow = tmp_path / "hold.json"
    flow.write_text(json.dumps(HOLD_FLOW))
    follower = subprocess.Popen([str(CONSOLE_SCRIPT), "flows", "run", str(flow), "--input", "{}", "--wait"],
                                env=_env(site), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backend = LocalBackend.from_profile(load_profile(site))
    deadline = time.monotonic() + 60
    while not (runs := backend.list_runs()) or not runs[0].timeline:
        assert time.monotonic() < deadline and follower.poll() is None, follower.communicate()
        time.sleep(0.2)
    time.sleep(1)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=30)
    run_id = runs[0].run_id
    assert follower.returncode == 130 and "Aborted" not in err and "Traceback" not in err, err
    assert f"stopped following; run {run_id} continues (ACTIVE at Hold)" in err
    assert f"ptychoflow runs watch {run_id}" in err and f"ptychoflow runs cancel {run_id}" in err
    assert backend.get_run(run_id).status.value == "ACTIVE"
    # with the engine gone, the run is not moving: `runs list` says so above its table
    stop_engine(site / "state")
    listed = ptychoflow("runs", "list", env=_env(site))
    assert "warning: engine worker DOWN: not running; 1 active run(s) not advancing" in listed.stderr
    assert run_id[:8] in listed.stdout


def test_an_ambiguous_run_id_prefix_says_ambiguous(site, tmp_path):
    flow = tmp_path / "pass.json"
    flow.write_text(json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}))
    backend = LocalBackend.from_profile(load_profile(site))
    deployed = backend.deploy_flow(flow)
    ids = [backend.start_run(deployed, {}).run_id for _ in range(17)]  # 17 ids, 16 hex digits: two share one
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) >= 2)
    result = ptychoflow("runs", "show", first, env=_env(site), check=False)
    assert _error_line(result).startswith(f"error: run {first}: ambiguous, the id of several runs starts with it")
    unique = ids[0][:12]
    assert json.loads(ptychoflow("runs", "show", unique, "--json", env=_env(site)).stdout)["run_id"] == ids[0]
    absent = ptychoflow("runs", "show", "zzzz", env=_env(site), check=False)
    assert "run zzzz: not found" in _error_line(absent)


# -- defaults that stay out of the acquisition directory -------------------------------------------
def test_beamline_simulate_writes_into_the_profiles_acquisition_directory(site, tmp_path):
    ptychoflow("beamline", "simulate", "--scans", "1", "--first", "7", "--object-size", "96", "--no-stream",
               env=_env(site), cwd=tmp_path)
    assert (site / "acquisition" / "scan_0007.h5").exists()
    alone = ptychoflow("beamline", "simulate", "--no-stream", env=console_env(), cwd=tmp_path, check=False)
    assert "--out DIR is needed outside a profile" in _error_line(alone)


def test_reconstruct_writes_to_the_products_never_beside_the_scan(site, tmp_path):
    scan = site / "acquisition" / "scan_0001.h5"
    ptychoflow("reconstruct", str(scan), "-n", "1", "--engine", "ptychi", env=_env(site), cwd=tmp_path, timeout=300)
    assert (site / "hpc" / "products" / "scan_0001" / "scan_0001.recon.h5").exists()
    assert sorted(p.name for p in (site / "acquisition").iterdir()) == ["scan_0001.h5"]
    # (without a profile: ./reconstructions/SCAN_ID, checked by the Ctrl-C test below)
    refused = ptychoflow("reconstruct", str(scan), "--out", str(site / "acquisition"), env=_env(site), check=False)
    assert "acquisition directory" in _error_line(refused) and "--out" in refused.stderr


def _read_only(directory: Path, *command: str) -> list[str]:
    """`command` in a private mount namespace where `directory` is a read-only bind mount: a
    detector's read-only data folder, refused by the kernel (even to root)."""
    quoted = " ".join(shlex.quote(word) for word in command)
    d = shlex.quote(str(directory))
    return ["unshare", "--mount", "sh", "-c", f"mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {quoted}"]


def test_an_unwritable_output_directory_fails_before_any_work(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    scan = write_tiny(data, scan_id="scan_0001")
    probe = subprocess.run(_read_only(data, "touch", str(data / "probe")), capture_output=True, text=True)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here (needs root and unshare): {probe.stderr.strip()}")
    result = subprocess.run(_read_only(data, str(CONSOLE_SCRIPT), "reconstruct", str(scan), "--out", str(data / "recon")),
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=console_env())
    assert _error_line(result) == f"error: {data / 'recon'}: --out: cannot write here: Read-only file system"
    assert "rPIE" not in result.stderr  # no progress bar: it stopped before computing
    assert sorted(p.name for p in data.iterdir()) == ["scan_0001.h5"]


def test_ctrl_c_during_reconstruct_saves_a_stopped_early_product(tmp_path):
    (tmp_path / "data").mkdir()
    scan = write_tiny(tmp_path / "data", scan_id="scan_0001")
    out = tmp_path / "reconstructions" / "scan_0001"  # the default without a profile: below the working directory
    process = subprocess.Popen([str(CONSOLE_SCRIPT), "-v", "reconstruct", str(scan), "-n", "400", "--engine", "ptychi"],
                               env=console_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not any("rPIE iteration 3/400" in line for line in lines):  # -v logs each iteration
        assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # Ctrl-C at iteration 3 (or a few later) of 400
    stdout = process.stdout.read()
    process.wait(120)
    reader.join(10)
    stderr = "".join(lines)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "stopping after this iteration" in stderr and "stopped early: interrupted (Ctrl-C) after" in stdout
    product = read_product(out / "scan_0001.recon.h5")
    assert product.stopped_early and product.stop_reason.startswith("interrupted (Ctrl-C) after")
    assert 3 <= product.iterations_run < 400 and len(product.loss_history) == product.iterations_run
    assert product.object.size > 0 and product.probe.size > 0
    assert sorted(p.name for p in scan.parent.iterdir()) == ["scan_0001.h5"]  # nothing beside the scan


# -- logs, errors, output ---------------------------------------------------------------------------
def test_logs_prints_the_end_and_follows_across_rotation(site):
    log = site / "state" / "edge.log"
    log.with_name("edge.log.1").write_text("".join(f"old {i}\n" for i in range(5)))
    log.write_text("new 0\nnew 1\n")
    assert ptychoflow("logs", "edge", "-n", "3", env=_env(site)).stdout == "old 4\nnew 0\nnew 1\n"
    follower = subprocess.Popen([str(CONSOLE_SCRIPT), "logs", "edge", "-n", "0", "--follow"], env=_env(site),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # the console script starts and seeks to the end
    with open(log, "a") as handle:
        handle.write("after 1\n")
    time.sleep(1)
    log.rename(log.with_name("edge.log.1"))  # what RotatingFileHandler does
    log.write_text("rotated 1\n")
    time.sleep(2)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0 and out == "after 1\nrotated 1\n", (out, err)
    missing = ptychoflow("logs", "dashboard", env=_env(site), check=False)
    assert "no dashboard log yet" in _error_line(missing)


def test_errors_have_one_style(site):
    usage = ptychoflow("runs", "show", env=_env(site), check=False)
    assert usage.stderr.strip().splitlines()[-1] == "error: Missing argument 'RUN_ID'."
    assert usage.stderr.startswith("Usage: ptychoflow runs show")
    option = ptychoflow("doctor", "--jsn", check=False)
    last = option.stderr.strip().splitlines()[-1]  # click's own words (they vary between click releases)
    assert last.startswith("error: No such option") and "--jsn" in last and "--json" in last
    for result in (usage, option):
        assert "Error:" not in result.stderr and result.returncode == 2


def test_output_to_a_pipe_is_not_wrapped_at_80_columns(site):
    table = ptychoflow("doctor", env={k: v for k, v in console_env().items() if k != "COLUMNS"}).stdout
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert max(len(row) for row in rows) > 80  # the long details (each rPIE engine's) stay on their row...
    assert all(row.split("│")[1].strip() for row in rows), table  # ...no continuation rows, as a wrapped cell makes
    assert "…" not in table  # ...and none is cut short
    assert "[gpu]" in table  # and rich did not take the brackets for markup


def test_models_list_on_a_fresh_profile_is_empty_not_an_error(site):
    assert ptychoflow("models", "list", env=_env(site)).stdout.startswith("no models yet in ")
    assert json.loads(ptychoflow("models", "list", "--json", env=_env(site)).stdout) == []
    assert not (site / "hpc" / "registry").exists()  # asking does not create it
    status = ptychoflow("watch", "status", env=_env(site))
    assert "watcher not running" in status.stdout and "engine worker not running" in status.stdout
