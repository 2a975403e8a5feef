"""Profiles, flows and their inputs, the model registry, model manifests, token directories and
ports: every corruption is one line naming the file and the field (exit 2 from the installed
console script), nothing is written where it does not belong, and nothing starts half-way."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Callable

import pytest
import zmq

from edge_helpers import constant_model, preprocessing, running_service, wait_for
from hostile_support import Tree, cli_error, console, escaped, not_half_written, one_line_error, refused_with_reason
from ptychoflow.artifact import MANIFEST_FILENAME, ModelManifest, publish_model, read_manifest
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flow_inputs import reconstruct_input
from ptychoflow.fs import sha256_file
from ptychoflow.nn.registry import DB_FILENAME, Registry
from ptychoflow.profile import load_profile, write_local_profile


# -- profiles -----------------------------------------------------------------------------
def _edit(old: str, new: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return edit


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


PROFILES = {  # how the profile is spoiled -> the key the error names
    "non-UTF-8 byte": (lambda p: p.write_bytes(p.read_bytes().replace(b"# ptychoflow", b"# \xff\xfe", 1)), "(file)"),
    "TOML syntax": (_bytes(b'backend = "local"\n[beamline\n'), "(toml)"),
    "empty file": (_bytes(b""), "beamline"),
    "unknown key": (_edit("[hpc]", "[hpc]\nshell = 'rm -rf /'"), "hpc.shell"),
    "port as text": (_edit("http_port = 8765", 'http_port = "eighty"'), "edge.http_port"),
    "port out of range": (_edit("http_port = 8765", "http_port = 70000"), "edge.http_port"),
    "NUL in a site path": (_edit('path = "hpc"', 'path = "h\\u0000pc"'), "hpc.path"),
    "NUL in state_dir": (_edit('state_dir = "state"', 'state_dir = "st\\u0000ate"'), "state_dir"),
    "state_dir is a file": (_edit('state_dir = "state"', 'state_dir = "ptychoflow.toml"'), "state_dir"),
    "edge path is a file": (_edit('path = "edge"', 'path = "ptychoflow.toml"'), "edge.path"),
    "scan memory bound 0": (_edit("max_scan_mb = 256.0", "max_scan_mb = 0"), "edge.max_scan_mb"),
    "give-up time negative": (_edit("give_up_after_s = 3600", "give_up_after_s = -1"), "watcher.give_up_after_s"),
    "backend unknown": (_edit('backend = "local"', 'backend = "ssh"'), "backend"),
    "policy alpha > 1": (_edit("alpha = ", "alpha = 7 # "), "policy.alpha"),
}


@pytest.mark.parametrize("spoil, key", PROFILES.values(), ids=PROFILES.keys())
def test_broken_profile_is_one_line(tmp_path, spoil, key):
    path = write_local_profile(tmp_path)
    spoil(path)
    one_line_error(lambda: load_profile(path), str(path), f": {key}: ")


@pytest.mark.parametrize("name, command", [("non-UTF-8 byte", "watch status"), ("NUL in a site path", "models list"),
                                           ("state_dir is a file", "runs list")])
def test_broken_profile_through_the_console_script(tmp_path, name, command):
    """The reported cases (each a traceback before), as an operator meets them."""
    path = write_local_profile(tmp_path)
    PROFILES[name][0](path)
    cli_error([*command.split(), "--profile", str(path)], str(path), PROFILES[name][1])


def test_missing_acquisition_dir_fails_before_an_engine_worker_starts(tmp_path):
    """The reported case: the clean error came only after `watch` had started a detached engine."""
    from ptychoflow.flowengine.worker import engine_pid

    path = write_local_profile(tmp_path)
    (tmp_path / "acquisition").rmdir()
    tree = Tree(tmp_path)
    cli_error(["watch", "--profile", str(path)], "beamline.path", "no such directory")
    not_half_written(engine_pid(tmp_path / "state") is None, "an engine worker was started for a watcher that failed")
    tree.contained()


# -- flows and their inputs -----------------------------------------------------------------
@pytest.fixture
def site(tmp_path):
    path = write_local_profile(tmp_path)
    profile = load_profile(path)
    profile.functions.update({name: f"id-{name}" for name in ("reconstruct", "validate", "train", "activate")})
    return path, profile


def _input(tmp_path: Path, body: object) -> str:
    (tmp_path / "input.json").write_text(json.dumps(body))
    return f"@{tmp_path / 'input.json'}"


def test_a_missing_flow_file_never_runs_the_bundled_flow_of_that_name(site, tmp_path):
    """The reported case: `flows run /missing/reconstruct.json` ran the bundled reconstruct."""
    path, _ = site
    cli_error(["flows", "run", str(tmp_path / "missing" / "reconstruct.json"), "--input", "{}", "--profile", str(path)],
              "missing/reconstruct.json", "no such flow file")


FLOW_INPUTS = {  # change to a valid reconstruct input -> what the error names
    "absolute hpc.output_dir": (lambda b: b["hpc"].update(output_dir="/tmp/elsewhere"), "hpc.output_dir"),
    "hpc.output_dir with ..": (lambda b: b["hpc"].update(output_dir="products/../../../etc"), "hpc.output_dir"),
    "absolute hpc.scan_file": (lambda b: b["hpc"].update(scan_file="/etc/passwd"), "hpc.scan_file"),
    "relative hpc.root": (lambda b: b["hpc"].update(root="hpc"), "hpc.root"),
    "missing hpc.root": (lambda b: b["hpc"].pop("root"), "'root' is a required property"),
}


@pytest.mark.parametrize("change, field", FLOW_INPUTS.values(), ids=FLOW_INPUTS.keys())
def test_a_flow_input_that_leaves_its_site_is_refused_at_start(site, tmp_path, change, field):
    """The reported case: an absolute hpc.output_dir in an input was written to."""
    path, profile = site
    body = reconstruct_input(profile, "scan_0001.h5")
    change(body)
    given = _input(tmp_path, body)
    tree = Tree(tmp_path)
    cli_error(["flows", "run", "reconstruct", "--input", given, "--profile", str(path)], "reconstruct.json", field)
    tree.contained(tmp_path / "state")


FORGED_LABELS = {
    "label with ANSI escapes": "\x1b[2J\x1b[31mowned",
    "label with a forged line": "scan_0001\nrun 00000000  SUCCEEDED  forged",
    "label with rich markup and a bell": "[bold red]scan\x07[/]",
}


def test_runs_list_and_show_print_forged_labels_escaped(site, tmp_path):
    """The reported case: a scan id with ANSI escapes put escapes into `runs list`."""
    path, profile = site
    flow = tmp_path / "pass.json"
    flow.write_text(json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}))
    backend = LocalBackend.from_profile(profile)
    deployed = backend.deploy_flow(flow)
    runs = {label: backend.start_run(deployed, {}, label=label) for label in FORGED_LABELS.values()}  # listed as started
    listed = console("runs", "list", "--profile", str(path), env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    for label, run in runs.items():
        escaped(listed.stdout, label)
    label, run = next(iter(runs.items()))
    one = console("runs", "show", run.run_id[:8], "--profile", str(path), env={"COLUMNS": "200"})
    assert one.returncode == 0, one.stderr
    escaped(one.stdout, label)


BAD_INPUT_TEXT = {
    "not JSON": ("{scan_id: 1", "--input", "(json)"),
    "a list": ("[1, 2]", "--input", "(json)"),
    "missing file": ("@/nonexistent/input.json", "input.json", "(file)"),
}


@pytest.mark.parametrize("text, source, field", BAD_INPUT_TEXT.values(), ids=BAD_INPUT_TEXT.keys())
def test_unreadable_flow_input_is_one_line(site, text, source, field):
    path, _ = site
    cli_error(["flows", "run", "reconstruct", "--input", text, "--profile", str(path)], source, field)


BAD_FLOWS = {
    "not JSON": ("{", "my_flow.json"),
    "unknown state type": (json.dumps({"StartAt": "A", "States": {"A": {"Type": "Shell", "End": True}}}), "Shell"),
    "StartAt names no state": (json.dumps({"StartAt": "B", "States": {"A": {"Type": "Pass", "End": True}}}), "B"),
}


@pytest.mark.parametrize("text, named", BAD_FLOWS.values(), ids=BAD_FLOWS.keys())
def test_a_broken_flow_definition_is_refused(tmp_path, text, named):
    flow = tmp_path / "my_flow.json"
    flow.write_text(text)
    cli_error(["flows", "validate", str(flow)], "my_flow", named)


# -- the model registry ---------------------------------------------------------------------
def _registry(tmp_path: Path) -> Registry:
    """A registry with v0001 (best) and v0002, files in place, as training leaves it."""
    registry = Registry(tmp_path / "hpc" / "registry")
    for number in (1, 2):
        version = f"v{number:04d}"
        directory = registry.version_dir(version)
        directory.mkdir(parents=True)
        (directory / "checkpoint.pt").write_bytes(b"weights")
        (directory / "model.onnx").write_bytes(constant_model(64, float(number)))
        registry.register(version, parent=None, model_config={"kind": "ptychonn2", "size": 64},
                          preprocessing=preprocessing().to_json(), scans_seen=["scan_0001"], val_loss=0.1,
                          ssim=0.5 + number / 10, checkpoint_path=directory / "checkpoint.pt",
                          onnx_path=directory / "model.onnx", onnx_sha256=sha256_file(directory / "model.onnx"))
    registry.promote("v0001")
    return registry


def _sql(statement: str, *args: object) -> Callable[[Registry], None]:
    def corrupt(registry: Registry) -> None:
        with sqlite3.connect(registry.db_path) as db:
            db.execute(statement, args)
    return corrupt


REGISTRY = {  # corruption -> field the error names
    "a row with bad JSON": (_sql("UPDATE versions SET model_config='{not json' WHERE version='v0002'"),
                            "versions[v0002].model_config"),
    "a JSON list where an object belongs": (_sql("UPDATE versions SET extra='[1]' WHERE version='v0002'"),
                                            "versions[v0002].extra"),
    "text SSIM": (_sql("UPDATE versions SET ssim='excellent' WHERE version='v0002'"), "versions[v0002].ssim"),
    "best names a missing version": (_sql("UPDATE pointers SET version='v0099' WHERE name='best'"), "pointers.best"),
    "an ONNX path leading out": (_sql("UPDATE versions SET onnx_path='../../../etc/passwd' WHERE version='v0002'"),
                                 "versions[v0002].onnx_path"),
    "an absolute checkpoint path": (_sql("UPDATE versions SET checkpoint_path='/etc/shadow' WHERE version='v0002'"),
                                    "versions[v0002].checkpoint_path"),
    "a version name that escapes": (_sql("UPDATE versions SET version='../x' WHERE version='v0002'"),
                                    "versions.version"),
    "garbage instead of SQLite": (lambda r: r.db_path.write_bytes(b"this is not a database" * 100), "(sqlite)"),
}


@pytest.mark.parametrize("corrupt, field", REGISTRY.values(), ids=REGISTRY.keys())
def test_a_corrupt_registry_is_one_line(tmp_path, corrupt, field):
    registry = _registry(tmp_path)
    corrupt(registry)
    write_local_profile(tmp_path)
    cli_error(["models", "list", "--profile", str(tmp_path)], DB_FILENAME, field)


def test_a_zero_byte_registry_is_refused_and_never_written(tmp_path):
    """The reported case: a 0-byte database was taken for an empty registry and written to."""
    write_local_profile(tmp_path)
    db = tmp_path / "hpc" / "registry" / DB_FILENAME
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    tree = Tree(tmp_path)
    for command in (["models", "list"], ["models", "promote", "v0001"]):
        cli_error([*command, "--profile", str(tmp_path)], DB_FILENAME, "0 bytes")
    one_line_error(lambda: Registry(db.parent).best(), DB_FILENAME, "0 bytes")
    assert tree.contained() == [] and db.stat().st_size == 0


def test_queries_never_create_a_registry(tmp_path):
    assert Registry(tmp_path / "registry").list() == [] and Registry(tmp_path / "registry").best() is None
    not_half_written(not (tmp_path / "registry").exists(), "a query created a registry")


def test_export_verifies_the_recorded_sha256(tmp_path):
    """The reported case: `models export` copied an arbitrary file as model.onnx."""
    from ptychoflow.nn.export import stage_version

    registry = _registry(tmp_path)
    (registry.version_dir("v0002") / "model.onnx").write_bytes(b"not the model that was trained")
    out = tmp_path / "hpc" / "registry" / "staged" / "v0002"
    one_line_error(lambda: stage_version(registry.get("v0002"), out), "model.onnx", "sha256", "registry recorded")
    not_half_written(not (out / MANIFEST_FILENAME).exists(), "a manifest was staged for an unverified file")


@pytest.mark.slow  # the console script's `models export` imports torch (seconds)
def test_export_through_the_console_script(tmp_path):
    registry = _registry(tmp_path)
    write_local_profile(tmp_path)
    (registry.version_dir("v0002") / "model.onnx").write_bytes(b"swapped")
    out = tmp_path / "hpc" / "registry" / "staged" / "v0002"
    cli_error(["models", "export", "v0002", str(out), "--profile", str(tmp_path)], "model.onnx", "sha256")
    cli_error(["models", "export", "v0042", str(tmp_path / "out"), "--profile", str(tmp_path)], DB_FILENAME, "version")
    not_half_written(not (out / MANIFEST_FILENAME).exists(), "a manifest was staged for an unverified file")


# -- model manifests ------------------------------------------------------------------------
def _model_dir(tmp_path: Path, **changes: object) -> Path:
    directory = tmp_path / "model"
    directory.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "source.onnx"
    source.write_bytes(constant_model(64, 1.0))
    manifest = ModelManifest("v1", sha256_file(source), [1, 64, 64], preprocessing().to_json())
    publish_model(directory, source, manifest)
    data = json.loads((directory / MANIFEST_FILENAME).read_text())
    data.update(changes)
    (directory / MANIFEST_FILENAME).write_text(json.dumps(data))
    return directory


MANIFESTS = {  # manifest field changes -> the field the error names
    "version null": ({"version": None}, "version"),
    "sha256 null": ({"sha256": None}, "sha256"),
    "input_shape null": ({"input_shape": None}, "input_shape"),
    "preprocessing null": ({"preprocessing": None}, "preprocessing"),
    "input_shape text": ({"input_shape": "1x64x64"}, "input_shape"),
    "input_shape negative": ({"input_shape": [1, -64, 64]}, "input_shape"),
    "sha256 not hex": ({"sha256": "z" * 64}, "sha256"),
    "outputs null": ({"outputs": None}, "outputs"),
    "version ../": ({"version": "../../model"}, "version"),
    "parent with newline": ({"parent": "v0\nforged"}, "parent"),
    "stitch_weight file ../": ({"stitch_weight": {"file": "../../etc/passwd", "sha256": "0" * 64}}, "stitch_weight.file"),
    "stitch_weight sha null": ({"stitch_weight": {"file": "w.npy", "sha256": None}}, "stitch_weight.sha256"),
    "absolute probe_weight_path": ({"probe_weight_path": "/etc/passwd"}, "probe_weight_path"),
}


@pytest.mark.parametrize("changes, field", MANIFESTS.values(), ids=MANIFESTS.keys())
def test_a_bad_manifest_is_one_line(tmp_path, changes, field):
    directory = _model_dir(tmp_path, **changes)
    one_line_error(lambda: read_manifest(directory), MANIFEST_FILENAME, field)


def test_a_manifest_that_is_not_an_object(tmp_path):
    directory = _model_dir(tmp_path)
    (directory / MANIFEST_FILENAME).write_text("[1, 2, 3]")
    one_line_error(lambda: read_manifest(directory), MANIFEST_FILENAME, "(json)")


def test_the_edge_starts_with_a_null_in_its_manifest_and_counts_the_refusal(tmp_path):
    """The reported case: a null in the manifest made `edge serve` exit 1 at start-up."""
    _model_dir(tmp_path / "edge", input_shape=None)
    with running_service(tmp_path) as (service, _):
        refused_with_reason(service.status()["state"] == "running" and
                            'ptychoflow_edge_models_refused_total 1.0' in service.metrics.exposition().decode(),
                            "a null manifest was not counted as a refusal")
        assert service.models.current() is None


def test_a_null_in_a_manifest_while_serving_is_counted_as_refused(tmp_path):
    with running_service(tmp_path) as (service, _):
        _model_dir(tmp_path / "edge", preprocessing=None)
        wait_for(lambda: any(e["event"] == "refused" for e in service.models.events), what="refusal")
        refused_with_reason("preprocessing" in service.models.events[-1]["detail"], "not refused for preprocessing")


# -- token files and ports ------------------------------------------------------------------
def test_a_shared_token_dir_is_refused_and_left_as_it_is(tmp_path, monkeypatch):
    """The reported case: PTYCHOFLOW_TOKEN_DIR on a shared 1777 directory got chmodded to 0700."""
    from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, token_file

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(shared))
    one_line_error(lambda: OwnerOnlyJSONTokenStorage(token_file()), str(shared), "PTYCHOFLOW_TOKEN_DIR", "shared")
    not_half_written(stat.S_IMODE(shared.stat().st_mode) == 0o1777 and not token_file().exists(),
                     "the shared directory was changed")


def test_a_token_dir_of_another_user_is_refused(tmp_path, monkeypatch):
    from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, token_file

    if os.getuid() != 0:
        pytest.skip("making a directory another user's needs root (chown)")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 4242, -1)
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(foreign))
    one_line_error(lambda: OwnerOnlyJSONTokenStorage(token_file()), str(foreign), "uid 4242")
    not_half_written(stat.S_IMODE(foreign.stat().st_mode) == 0o700 and foreign.stat().st_uid == 4242, "changed")


def test_a_symlinked_token_file_is_refused(tmp_path, monkeypatch):
    from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, token_file

    own = tmp_path / "tokens"
    own.mkdir(mode=0o700)
    (tmp_path / "elsewhere.json").write_text("{}")
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(own))
    token_file().symlink_to(tmp_path / "elsewhere.json")
    one_line_error(lambda: OwnerOnlyJSONTokenStorage(token_file()), "globus-tokens.json", "symlink")


@pytest.fixture
def busy_port():
    sock = zmq.Context.instance().socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield f"tcp://127.0.0.1:{port}"
    sock.close()


def test_a_stream_port_in_use_is_one_line(tmp_path, busy_port):
    """The reported case: a port already in use gave a zmq.error.ZMQError traceback."""
    cli_error(["beamline", "simulate", "--scans", "1", "--out", str(tmp_path / "acq"), "--stream", busy_port],
              busy_port, "Address already in use")


def test_the_edge_results_port_in_use_is_one_line(tmp_path, busy_port):
    path = write_local_profile(tmp_path)
    cli_error(["edge", "serve", "--profile", str(path), "--results", busy_port, "--port", "0"], busy_port, "in use")
