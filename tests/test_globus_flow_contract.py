"""The bundled flows send what the real action providers take, so local and remote runs agree.

Transfer states ask for verified copies and checksum sync explicitly (the service's defaults
are neither, the local provider honours both); Compute states use the V3 provider's shape:
everything about a task inside ``tasks[]``.
"""

from __future__ import annotations

import json
import re

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

    from console_script import CONSOLE_SCRIPT

    cli = str(CONSOLE_SCRIPT)
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


# -- every value a flow reads from its input is required by its schema --------------------
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_DOTTED = re.compile(r"(?<![\w.$])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def input_paths(flow: dict) -> set[tuple[str, ...]]:
    """Dotted paths the flow reads: ``.$`` JSONPaths, Choice variables, names in ``.=`` expressions."""
    found: set[tuple[str, ...]] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and (key.endswith(".$") or key == "Variable") and value.startswith("$."):
                    found.add(tuple(re.split(r"[.\[]", value[2:])))
                elif isinstance(value, str) and key.endswith(".="):
                    found.update(tuple(m.split(".")) for m in _DOTTED.findall(_QUOTED.sub("", value)))
                    found.update((name,) for name in re.findall(r"(?<![\w.'])([a-z_]\w*)(?![\w.(])", _QUOTED.sub("", value)))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(flow["States"])
    return found


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.stem)
def test_everything_a_flow_reads_from_its_input_is_required(path):
    flow = json.loads(path.read_text())
    schema = json.loads(path.with_name(f"{path.stem}.schema.json").read_text())
    assert '"default"' not in json.dumps(schema)  # Globus Flows never fills one in
    checked = 0
    for parts in sorted(input_paths(flow)):
        node = schema
        if parts[0] not in node["properties"]:
            continue  # a state's result ($.Reconstruct...), the run context, a literal
        for part in parts:
            if "properties" not in node:
                break  # an opaque object (user_endpoint_config) or a leaf
            assert part in node.get("required", []), f"{path.stem} reads $.{'.'.join(parts)} but {part} is not required"
            node = node["properties"][part]
            checked += 1
    assert checked >= 10


def test_inputs_the_service_would_accept_for_a_globus_site(tmp_path):
    """The inputs ptychoflow builds for a globus profile pass each flow's schema, with every
    Transfer path below the site's collection base path."""
    import jsonschema

    from ptychoflow.flow_inputs import deploy_model_input, reconstruct_and_train_input, reconstruct_input
    from ptychoflow.function_registry import FunctionRecord, FunctionRegistry
    from ptychoflow.profile import Profile

    profile = Profile.model_validate({
        "backend": "globus",
        "beamline": {"path": "/data/acq", "collection_id": "c-beam"},
        "hpc": {"path": "/lus/eagle/projects/PTYCHO/staging", "collection_id": "c-hpc", "endpoint_id": "e-hpc",
                "collection_base_path": "/lus/eagle/projects/PTYCHO/staging", "user_endpoint_config": {"account": "PTYCHO"}},
        "edge": {"path": "/var/lib/ptychoflow/edge", "collection_id": "c-edge", "endpoint_id": "e-edge"},
        "state_dir": str(tmp_path / "state"),
    })
    for name in ("reconstruct", "validate", "train", "activate"):
        FunctionRegistry(profile.state_path).put("globus", name, FunctionRecord(f"fn-{name}", "0" * 64, 0.0))
    built = {"reconstruct_and_train": reconstruct_and_train_input(profile, "scan_0001.h5"),
             "reconstruct": reconstruct_input(profile, "scan_0001.h5"), "deploy_model": deploy_model_input(profile, "v0003")}
    for name, body in built.items():
        jsonschema.validate(body, json.loads((flows_dir() / f"{name}.schema.json").read_text()))
    trained = built["reconstruct_and_train"]
    assert trained["hpc"]["scan_path"] == "/lus/eagle/projects/PTYCHO/staging/scans/scan_0001.h5"
    assert trained["hpc"]["root"] == "/lus/eagle/projects/PTYCHO/staging" and trained["hpc"]["scan_file"] == "scans/scan_0001.h5"
    assert trained["edge"]["root"] == "/var/lib/ptychoflow/edge"
    assert trained["hpc"]["staged_path"] == "/lus/eagle/projects/PTYCHO/staging/registry/staged"
    assert trained["beamline"]["scan_path"] == "/scan_0001.h5" and trained["edge"]["staging_path"] == "/staging"
    assert trained["hpc"]["user_endpoint_config"] == {"account": "PTYCHO"} and trained["edge"]["user_endpoint_config"] == {}
