"""A plain (non-editable) install still finds the bundled flows and functions."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow
def test_wheel_bundles_flows_and_functions_and_the_cli_finds_them(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("ptychoflow-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    flows = sorted(n for n in names if n.startswith("ptychoflow/_bundled/flows/") and n.endswith(".json"))
    functions = sorted(n for n in names if n.startswith("ptychoflow/_bundled/functions/") and n.endswith(".py"))
    assert flows and functions
    assert len(flows) == len(list((REPO / "flows").glob("*.json")))
    assert len(functions) == len(list((REPO / "functions").glob("*.py")))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = "from ptychoflow.resources import flows_dir, functions_dir; print(flows_dir()); print(functions_dir())"
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith(str(target)) and out[0].endswith("_bundled/flows")
    assert out[1].endswith("_bundled/functions")


def test_no_dependency_drags_in_torchvision_or_cuda_torch():
    """ptychi's metadata requires torchvision (a CUDA wheel pinning CUDA torch): it must never be
    a dependency of ours, and the setup path must pin the CPU torch and install ptychi --no-deps."""
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    assert not names & {"ptychi", "torchvision"}
    makefile = (REPO / "Makefile").read_text()
    assert '"torch==2.13.0"' in makefile and '--no-deps "ptychi==' in makefile
