"""The prepared GPU check: its CPU dry run end to end through `make`, its time boxes, and the
wheels it carries (pinned, within budget, installable offline into a clean Python 3.12)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO

sys.path.append(str(REPO / "benchmarks"))

from gpucheck import runner, wheels  # noqa: E402
from gpucheck.sections import SECTIONS, Section  # noqa: E402

PYTHON312 = Path("/root/.pyenv/versions/3.12.1/bin/python3.12")


@pytest.mark.slow
def test_dry_run_through_make(tmp_path):
    """What CI runs: every section runs on tiny sizes or skips with its reason, one table,
    gpu_check.json and the images."""
    out = tmp_path / "check"
    result = subprocess.run(["make", "--no-print-directory", "gpu-check", "DRY=1", f"OUT={out}"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((out / "gpu_check.json").read_text())
    assert document["dry"] and [s["name"] for s in document["sections"]] == [s.name for s in SECTIONS]
    for section in document["sections"]:
        name = section["name"]
        assert section["status"] in ("ok", "skipped"), (name, section.get("reason"), section.get("log_tail"))
        for row in section["rows"]:
            assert row["measure"] and row["text"], (name, row)
            if row["verdict"] == "skipped":
                assert len(row["text"]) > len("skipped: "), f"{name}: a skip must say why"
    rows = {(s["name"], row["measure"]): row for s in document["sections"] for row in s["rows"]}
    assert rows[("inference", "= ONNX Runtime (float32)")]["verdict"] == "met"
    assert rows[("preprocess", "NumPy")]["value"] > 0
    assert rows[("edge", "frames lost, paced")]["verdict"] == "met"
    assert next(r for (n, m), r in rows.items() if n == "rpie" and m.startswith("Pty-chi rPIE (")) ["value"] > 0
    for image in ("rpie.png", "inference.png", "edge_mosaic.png"):
        with Image.open(out / image) as picture:
            assert picture.size[0] > 100
    table = (out / "gpu_check.txt").read_text()
    assert table.strip() in result.stdout
    assert all(f"\n{s.name}" in table for s in SECTIONS)


def _section_module(directory: Path, name: str, body: str) -> Section:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return Section(name, f"test section {name}", 0, module=name)


def _run(tmp_path: Path, section: Section, box_s: float) -> dict:
    out = tmp_path / "out"
    for sub in ("logs", "sections"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    env = runner.section_env(None, dry=True)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    return runner.run_section(section, out, box_s=box_s, dry=True, env=env)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_time_box_stops_the_section_and_its_children_and_keeps_its_rows(tmp_path):
    section = _section_module(tmp_path, "sleepy", """
        import subprocess, sys, time
        def run(record, context):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            record.set("child", child.pid)
            record.row("before the hang", "1 figure")
            time.sleep(120)
    """)
    started = time.monotonic()
    result = _run(tmp_path, section, box_s=4)
    assert time.monotonic() - started < 20
    assert result["status"] == "timed_out" and "4 s time box" in result["reason"]
    assert [row["text"] for row in result["rows"]] == ["1 figure"]
    deadline = time.monotonic() + 5
    while _alive(result["data"]["child"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(result["data"]["child"]), "the section's own child process outlived its time box"


def test_a_failing_section_reports_the_error_and_keeps_its_log(tmp_path):
    section = _section_module(tmp_path, "broken", """
        def run(record, context):
            record.row("first", "measured")
            raise ValueError("the CUDA driver is older than the runtime")
    """)
    result = _run(tmp_path, section, box_s=60)
    assert result["status"] == "failed"
    assert result["reason"] == "ValueError: the CUDA driver is older than the runtime"
    assert result["rows"][0]["text"] == "measured"
    assert "Traceback" in (tmp_path / "out" / result["log"]).read_text()


def test_a_section_missing_a_package_is_skipped_with_its_name(tmp_path):
    section = _section_module(tmp_path, "needs_more", """
        import no_such_package_for_the_gpu_check
        def run(record, context):
            pass
    """)
    result = _run(tmp_path, section, box_s=60)
    assert result["status"] == "skipped" and "no_such_package_for_the_gpu_check" in result["reason"]


def test_budget_spent_sections_are_skipped_not_started(tmp_path, capsys):
    status = runner.run_check(tmp_path, dry=True, budget_s=10, only=["machine", "preprocess"],
                              wheel_dir=tmp_path / "no-wheels")
    assert status == 0
    document = json.loads((tmp_path / "gpu_check.json").read_text())
    for section in document["sections"]:
        assert section["status"] == "skipped" and "no time left in the 10 s budget" in section["reason"]
    assert "no time left" in capsys.readouterr().out


def test_unknown_section_is_a_usage_error():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "out", "--only", "rpie,gpus"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown section(s) gpus" in result.stderr


# -- the wheels ---------------------------------------------------------------------------
def test_wheel_list_pins_and_hashes_exactly_what_the_gpu_machine_lacks():
    pins = wheels.read_pins()
    names = [pin.key for pin in pins]
    assert len(names) == len(set(names))
    assert {"pyzmq", "pydantic", "tike", "ptychi"} <= set(names)  # the list of what is missing
    heavy = {"torch", "cupy-cuda13x", "numpy", "scipy", "onnxruntime", "onnxruntime-gpu", "onnx", "h5py"}
    assert not heavy & set(names), "the machine has these; carrying them would blow the budget"
    assert all(len(pin.sha256) == 64 and pin.why for pin in pins)


def test_wheel_list_refuses_an_unpinned_line(tmp_path):
    listing = tmp_path / "wheels.txt"
    listing.write_text("tike>=0.26  # no exact version, no hash\n")
    with pytest.raises(ValueError, match=r"wheels.txt:1: expected 'name==version --hash=sha256:HEX"):
        wheels.read_pins(listing)


def test_plan_installs_what_is_missing_or_older_and_pure(tmp_path):
    """plan() decides from versions and wheel names alone (pip installs the files later)."""
    import numpy
    import pandas

    digest = "0" * 64
    for name in ("tqdm-999.0-py3-none-any.whl", "pandas-999.0-cp312-cp312-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).touch()
    pins = [wheels.Pin("numpy", "1.0", digest, "present and newer: kept"),
            wheels.Pin("tqdm", "999.0", digest, "present, older, pure wheel: installed"),
            wheels.Pin("pandas", "999.0", digest, "present, older, compiled: kept"),
            wheels.Pin("NumPy", "999.0", digest, "present, older, no wheel: kept"),
            wheels.Pin("no-such-dist", "1.0", digest, "missing, no wheel: unavailable")]
    todo, present, unavailable = wheels.plan(pins, tmp_path)
    assert [(pin.name, wheel.name) for pin, wheel in todo] == [("tqdm", "tqdm-999.0-py3-none-any.whl")]
    assert present == {"numpy": numpy.__version__, "NumPy": f"{numpy.__version__} (older than 999.0, no wheel: kept)",
                       "pandas": f"{pandas.__version__} (older than 999.0, compiled: kept)"}
    assert list(unavailable) == ["no-such-dist"] and "make gpu-wheels" in unavailable["no-such-dist"]


@pytest.mark.slow
def test_wheels_fit_the_budget_and_install_offline_into_a_clean_python312(tmp_path):
    """Fetch the wheels (network), then, in a fresh Python 3.12 holding only what the GPU
    machine has that these imports need, install them the way the check does (pip
    --no-index --target) and import what the check imports."""
    if not PYTHON312.exists():
        pytest.skip(f"no Python 3.12 at {PYTHON312}: the GPU machine's Python is needed for cp312 wheels")
    fetch = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_wheels.py")], capture_output=True, text=True,
                           timeout=900)
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    assert "of the 64 MiB budget" in fetch.stdout
    total = sum(wheels.wheel_file(pin, wheels.WHEEL_DIR).stat().st_size for pin in wheels.read_pins())
    assert total + wheels.tree_bytes() <= wheels.BUDGET_BYTES
    assert wheels.uncovered_requirements() == {}, "a carried wheel needs something neither carried nor on the machine"

    machine = tmp_path / "py312"
    subprocess.run([str(PYTHON312), "-m", "venv", str(machine)], check=True, timeout=300)
    python = machine / "bin" / "python"
    machine_packages = ["numpy", "scipy", "python-dateutil", "packaging"]  # the GPU machine has these
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *machine_packages], check=True,
                   timeout=900)
    site_root = tmp_path / "site"
    script = (f"import sys, json; sys.path[:0] = [{str(REPO / 'benchmarks')!r}, {str(REPO / 'src')!r}]\n"
              f"from gpucheck import wheels\nfrom pathlib import Path\n"
              f"print(json.dumps(wheels.install(site_root=Path({str(site_root)!r})).to_json()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/nothing", PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="")  # no index reachable
    installed = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert installed.returncode == 0, installed.stderr
    report = json.loads(installed.stdout.strip().splitlines()[-1])
    assert report["unavailable"] == {}, report
    assert {"pyzmq", "pydantic", "tike", "ptychi", "pandas", "scikit-learn"} <= set(report["installed"])
    target = Path(report["target"])
    imports = ("import zmq, pydantic, prometheus_client, tqdm, pandas, sklearn.cluster, tike\n"
               "import importlib.util; assert importlib.util.find_spec('ptychi')  # imports torch: on the machine\n"
               "import ptychoflow.stream, ptychoflow_edge.metrics\n"
               "print(zmq.zmq_version(), pydantic.VERSION, pandas.__version__)")
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(REPO / "src"), str(REPO / "edge")])
    checked = subprocess.run([str(python), "-c", imports], capture_output=True, text=True, env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    again = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env | {"PYTHONPATH": ""},
                           timeout=300)
    assert json.loads(again.stdout.strip().splitlines()[-1])["target"] == str(target)  # a rerun reuses the install
    shutil.rmtree(machine, ignore_errors=True)
