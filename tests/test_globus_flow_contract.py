"""The bundled flows send what the real action providers take, so local and remote runs agree.

Transfer states ask for verified copies and checksum sync explicitly (the service's defaults
are neither, the local provider honours both); Compute states use the V3 provider's shape:
everything about a task inside ``tasks[]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptychoflow.flowengine.providers.compute import BODY_FIELDS, TASK_FIELDS
from ptychoflow.resources import flows_dir

TRANSFER = "https://transfer.actions.globus.org/transfer"
COMPUTE = "https://compute.actions.globus.org/v3"
FLOWS = sorted(p for p in flows_dir().glob("*.json") if not p.name.endswith(".schema.json"))


def states(url: str) -> list[tuple[str, str, dict]]:
    found = []
    for path in FLOWS:
        for name, state in json.loads(path.read_text())["States"].items():
            if state.get("ActionUrl") == url:
                found.append((path.stem, name, state["Parameters"]))
    return found


def field(parameters: dict, key: str):
    """A parameter's literal value, or its ``.$``/``.=`` source: both forms count as sent."""
    for form in (key, f"{key}.$", f"{key}.="):
        if form in parameters:
            return parameters[form]
    raise KeyError(key)


@pytest.mark.parametrize("flow, state, parameters", states(TRANSFER), ids=lambda v: v if isinstance(v, str) else "")
def test_transfers_ask_for_verified_checksum_synced_copies(flow, state, parameters):
    assert parameters["verify_checksum"] is True and parameters["sync_level"] == "checksum"


@pytest.mark.parametrize("flow, state, parameters", states(COMPUTE), ids=lambda v: v if isinstance(v, str) else "")
def test_compute_states_use_the_v3_body(flow, state, parameters):
    sent = {key.removesuffix(".$").removesuffix(".=") for key in parameters}
    assert sent <= BODY_FIELDS and {"endpoint_id", "tasks"} <= sent
    for task in parameters["tasks"]:
        assert {key.removesuffix(".$").removesuffix(".=") for key in task} <= TASK_FIELDS
        field(task, "function_id")


def test_every_bundled_flow_has_transfers_and_compute_states():
    assert {f for f, _, _ in states(TRANSFER)} == {p.stem for p in FLOWS} == {f for f, _, _ in states(COMPUTE)}


def test_flows_run_dry_run_on_a_fresh_local_site(tmp_path):
    """The installed console script: the input built for a scan passes; a broken one names its field."""
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "ptychoflow")
    subprocess.run([cli, "init", str(tmp_path)], check=True, capture_output=True)
    ok = subprocess.run([cli, "flows", "run", "reconstruct_and_train", "--scan", "scan_0001.h5", "--dry-run"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "accepts this input" in ok.stdout and "nothing started" in ok.stdout
    bad = subprocess.run([cli, "flows", "run", "reconstruct", "--input", '{"scan_id": ""}', "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'beamline' is a required property" in bad.stderr
    from ptychoflow.flowengine.worker import engine_pid

    assert engine_pid(tmp_path / "state") is None  # a dry run starts no engine worker
