"""deploy/compute-endpoints/ against the real ``globus-compute-endpoint`` (pinned in the dev extra).

Nothing here re-implements the endpoint: every config goes through the package's own
loader (``get_config``), every template through its own renderer
(``render_config_user_template``, which JSON-encodes user strings and checks the schema and
reserved words), every rendered result through its own config model (``load_config_yaml``
-> ``UserEndpointConfig`` with a real ``GlobusComputeEngine`` and Parsl provider), and the
installation through its own console script (``configure``, ``render-user-config``). The
identity mapping is read by the endpoint's ``PosixIdentityMapper``.

The endpoint package installs next to ptychoflow (it pins the same globus-compute-sdk), so
no separate virtual environment is needed.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import tomllib
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

endpoint_config = pytest.importorskip("globus_compute_endpoint.endpoint.config.utils")
from globus_compute_endpoint.endpoint.config.config import CoreEndpointConfig, UserEndpointConfig  # noqa: E402
from globus_compute_endpoint.endpoint.identity_mapper import MappedPosixIdentity, PosixIdentityMapper  # noqa: E402
from globus_compute_sdk.sdk.batch import create_user_runtime  # noqa: E402

from ptychoflow.flow_inputs import FUNCTION_NAMES, reconstruct_and_train_input  # noqa: E402
from ptychoflow.flowengine.parameters import render as render_parameters  # noqa: E402
from ptychoflow.function_registry import FunctionRecord, FunctionRegistry  # noqa: E402
from ptychoflow.profile import Policy, Profile  # noqa: E402
from ptychoflow.resources import flows_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
ENDPOINTS = sorted(p for p in (DEPLOY / "compute-endpoints").iterdir() if p.is_dir())
IDENTITY_MAPPING = DEPLOY / "compute-endpoints" / "identity_mapping.example.json"
ENDPOINT_CLI = Path(sys.executable).parent / "globus-compute-endpoint"
PLACEHOLDER_CLIENT = "00000000-0000-0000-0000-000000000000"
# The cluster interfaces (ib0, hsn0) do not exist here: Parsl resolves `address_by_interface`
# while the config is loaded, so the loaded copy names this machine's loopback instead.
LOCAL_INTERFACE = "lo"


def examples(directory: Path) -> dict[str, Any]:
    """The endpoint's documented variables with their examples (variables.yaml)."""
    variables = yaml.safe_load((directory / "variables.yaml").read_text())["variables"]
    return {name: spec["example"] for name, spec in variables.items()}


@functools.cache
def flow_options(directory: Path) -> dict[str, Any]:
    """The ``user_endpoint_config`` the bundled flow sends to this endpoint.

    A globus profile whose site (edge for the edge endpoint, hpc for the others) carries the
    documented examples; ptychoflow builds the flow input from it, and its Flows interpreter
    renders every Compute state's ``user_endpoint_config`` for that site from the input.
    """
    site = "edge" if directory.name == "edge" else "hpc"
    state = Path(tempfile.mkdtemp(prefix="ptychoflow-flow-options-"))
    profile = Profile.model_validate({
        "backend": "globus", "state_dir": str(state),
        "beamline": {"path": "/data/acq", "collection_id": "c-beam"},
        "hpc": {"path": "/srv/hpc", "collection_id": "c-hpc", "endpoint_id": "e-hpc"},
        "edge": {"path": "/srv/edge", "collection_id": "c-edge", "endpoint_id": "e-edge"},
    })
    getattr(profile, site).user_endpoint_config = examples(directory)
    for name in FUNCTION_NAMES:
        FunctionRegistry(state).put("globus", name, FunctionRecord(f"fn-{name}", "0" * 64, 0.0))
    body = reconstruct_and_train_input(profile, "scan_0001.h5")
    flow = json.loads((flows_dir() / "reconstruct_and_train.json").read_text())
    sent = [render_parameters({"user_endpoint_config.$": s["Parameters"]["user_endpoint_config.$"]}, body, {"run_id": "r"})
            for s in flow["States"].values()
            if s.get("ActionUrl", "").startswith("https://compute.actions.globus.org")
            and s["Parameters"]["endpoint_id.$"] == f"$.{site}.endpoint_id"]
    assert sent and all(options == sent[0] for options in sent)
    return sent[0]["user_endpoint_config"]


def runtime(python: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """``user_runtime`` as the Compute service forwards it from the SDK (JSON round trip).

    ``python`` overrides the version, as a submitter on another Python would send it.
    """
    data = json.loads(json.dumps(asdict(create_user_runtime())))
    if python is not None:
        version = ".".join(map(str, python))
        data["python"].update(version=version, version_tuple=list(python), version_info=[*python, "final", 0])
        data["python_version"] = data["python"]["version_description"] = f"{version} (main) [GCC 12.2.0]"
    return data


RUNTIMES = {
    "this-sdk": (runtime(), None),  # None: the submitter's own major.minor
    "python-3.12": (runtime((3, 12, 7)), "3.12"),
    "unbuilt-python-3.9": (runtime((3, 9, 18)), "3.11"),  # no env for it: the site default
    "no-runtime": ({}, "3.11"),  # a submission that reports no runtime: the site default
}


def identity() -> MappedPosixIdentity:
    return MappedPosixIdentity(local_user_record=pwd.getpwuid(os.getuid()), globus_identity_candidates=[],
                               matched_identity=uuid.UUID(int=0))


def render(directory: Path, options: dict[str, Any], user_runtime: dict[str, Any]) -> str:
    """Render with the endpoint's own renderer, schema check included."""
    template = directory / "user_config_template.yaml.j2"
    return endpoint_config.render_config_user_template(
        endpoint_config.get_config(directory), endpoint_config.load_user_config_template(template), template,
        identity(), endpoint_config.load_user_config_schema(directory / "user_config_schema.json"),
        options, user_runtime,
    )


def load_rendered(text: str) -> UserEndpointConfig:
    """The endpoint's config model builds the engine and provider from the rendered YAML."""
    doc = yaml.safe_load(text)
    address = doc["engine"].get("address")
    if isinstance(address, dict) and "ifname" in address:
        address["ifname"] = LOCAL_INTERFACE
    config = endpoint_config.load_config_yaml(yaml.safe_dump(doc))
    assert isinstance(config, UserEndpointConfig)
    return config


@pytest.fixture
def loaded():
    """Load rendered configs and shut their engines down afterwards."""
    engines = []

    def load(text: str) -> UserEndpointConfig:
        config = load_rendered(text)
        engines.append(config.engine)
        return config

    yield load
    for engine in engines:
        engine.shutdown()


def seconds(hms: str) -> int:
    hours, minutes, secs = (int(part) for part in hms.split(":"))
    return hours * 3600 + minutes * 60 + secs


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_the_flow_sends_the_profiles_user_endpoint_config(directory):
    """What the profile says reaches every Compute state of the site, unchanged."""
    assert flow_options(directory) == examples(directory) and flow_options(directory)


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_manager_config_loads_with_the_endpoint_loader(directory):
    config = endpoint_config.get_config(directory)
    assert isinstance(config, CoreEndpointConfig)  # no engine: a template-capable (core) endpoint
    assert config.display_name.startswith("ptychoflow") and config.public is False


@pytest.mark.parametrize("case", RUNTIMES, ids=str)
@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_template_renders_a_valid_user_endpoint(directory, case, loaded):
    user_runtime, python = RUNTIMES[case]
    python = python or "{}.{}".format(*sys.version_info[:2])
    options = flow_options(directory)

    config = loaded(render(directory, options, user_runtime))

    engine = config.engine
    assert type(engine).__name__ == "GlobusComputeEngine"
    provider = engine.executor.provider
    assert re.search(rf"/py{re.escape(python)}/bin/activate|/py{re.escape(python)}(;|$)", provider.worker_init), provider.worker_init
    assert engine.executor.available_accelerators  # GPU workers are pinned one per device
    for name in ("account", "partition", "walltime", "queue", "max_blocks", "nodes_per_block"):
        if name in options:
            assert getattr(provider, name) == options[name], name


def test_user_strings_inside_strings_lose_only_their_json_quotes(loaded):
    pbs = loaded(render(DEPLOY / "compute-endpoints" / "polaris-pbs", flow_options(DEPLOY / "compute-endpoints" / "polaris-pbs"), runtime()))
    assert pbs.engine.executor.provider.scheduler_options == "#PBS -l filesystems=home:eagle:grand"
    edge_dir = DEPLOY / "compute-endpoints" / "edge"
    edge = loaded(render(edge_dir, {"model_dir": "/srv/edge/model", "gpu": 1}, runtime()))
    assert edge.engine.executor.provider.worker_init.endswith("mkdir -p /srv/edge/model")
    assert edge.engine.executor.available_accelerators == ["1"]


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_defaults_alone_render(directory, loaded):
    """Only the required variables: every optional one falls back to its default."""
    required = {n: v for n, v in flow_options(directory).items()
                if n in json.loads((directory / "user_config_schema.json").read_text()).get("required", [])}
    assert isinstance(loaded(render(directory, required, runtime())).engine.executor.provider.worker_init, str)


@pytest.mark.parametrize("directory", [d for d in ENDPOINTS if d.name in ("hpc-slurm", "polaris-pbs")], ids=lambda p: p.name)
def test_default_walltime_outlasts_a_training(directory, loaded):
    """A block must outlive the training that runs in it, plus a reconstruction's share."""
    config = loaded(render(directory, {"account": "PTYCHO"}, runtime()))
    walltime = seconds(config.engine.executor.provider.walltime)
    assert walltime >= Policy().train_time_limit_s + 1800, walltime


@pytest.mark.parametrize("directory", [d for d in ENDPOINTS if d.name in ("hpc-slurm", "polaris-pbs")], ids=lambda p: p.name)
def test_missing_account_is_refused_by_the_schema(directory):
    with pytest.raises(jsonschema.ValidationError, match="'account' is a required property"):
        render(directory, {}, runtime())


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_unknown_hostile_and_reserved_options_are_refused(directory):
    with pytest.raises(jsonschema.ValidationError):
        render(directory, {**flow_options(directory), "not_a_variable": 1}, runtime())
    strings = [n for n, v in flow_options(directory).items() if isinstance(v, str)]
    for name in strings:  # a quote or newline would break out of the YAML scalar
        with pytest.raises(jsonschema.ValidationError):
            render(directory, {**flow_options(directory), name: 'x"\nengine: {}'}, runtime())
    with pytest.raises(ValueError, match="reserved word"):
        render(directory, {**flow_options(directory), "user_runtime": {}}, runtime())


def test_endpoint_python_is_not_read_from_the_deprecated_variable():
    for directory in ENDPOINTS:
        source = (directory / "user_config_template.yaml.j2").read_text()
        assert "python_version" not in source and "_GC.user_runtime" in source
        assert not re.search(r"(?<!_GC\.)\buser_runtime\b", source.split("-#}", 1)[1])


def _configure_args(directory: Path, name: str) -> list[str]:
    """The documented ``configure`` line for this endpoint (from its config.yaml header)."""
    args = ["configure", name, "--core-config", str(directory / "config.yaml"),
            "--template-config", str(directory / "user_config_template.yaml.j2"),
            "--schema-config", str(directory / "user_config_schema.json")]
    if directory.name == "hpc-slurm":  # run by root, maps identities
        return args + ["--multi-user", "true", "--contact-email", "ptychoflow-admin@facility.example",
                       "--id-mapping-config", str(IDENTITY_MAPPING)]
    return args + ["--multi-user", "false"]


def test_config_headers_document_the_configure_line():
    for directory in ENDPOINTS:
        header = (directory / "config.yaml").read_text()
        for option in _configure_args(directory, "x")[2::2]:
            if option.startswith("--"):
                assert option in header, f"{directory.name}/config.yaml does not show {option}"


@pytest.mark.parametrize("directory", [
    pytest.param(d, marks=() if d.name == "hpc-slurm" else pytest.mark.slow) for d in ENDPOINTS  # ~7 s each
], ids=lambda p: p.name)
def test_endpoint_cli_configures_and_renders_it(directory, tmp_path):
    """The installed console script: `configure` as documented, then `render-user-config`.

    The root-run Slurm endpoint (identity mapping, contact email) runs in the fast suite;
    the other three are marked slow (two endpoint CLI processes each).
    """
    env = {**os.environ, "GLOBUS_COMPUTE_USER_DIR": str(tmp_path / "gce")}
    name = f"ptychoflow-{directory.name}"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ENDPOINT_CLI), *args], env=env, capture_output=True, text=True, timeout=120)

    done = cli(*_configure_args(directory, name))
    assert done.returncode == 0, done.stderr
    installed = tmp_path / "gce" / name
    config = endpoint_config.get_config(installed)
    assert isinstance(config, CoreEndpointConfig) and config.display_name == endpoint_config.get_config(directory).display_name
    if directory.name == "hpc-slurm":
        assert config.email == "ptychoflow-admin@facility.example"
        assert json.loads(Path(config.identity_mapping_config_path).read_text()) == json.loads(IDENTITY_MAPPING.read_text())

    (tmp_path / "options.json").write_text(json.dumps(flow_options(directory)))
    (tmp_path / "runtime.json").write_text(json.dumps(runtime()))
    rendered = cli("render-user-config", "--endpoint", name, "--user-options", str(tmp_path / "options.json"),
                   "--user-runtime", str(tmp_path / "runtime.json"))
    assert rendered.returncode == 0, rendered.stderr
    expected = render(directory, flow_options(directory), runtime())
    assert rendered.stdout.strip() == expected.strip()
    load_rendered(rendered.stdout).engine.shutdown()


def test_identity_mapping_covers_people_and_the_watchers_client():
    mapper = PosixIdentityMapper(IDENTITY_MAPPING, "ptychoflow-test")
    try:
        def mapped(username: str, identity_id: str = "5b1c5b8e-7f4a-4a55-8a0a-2b3c4d5e6f70") -> list[str]:
            found = mapper.map_identities([{"id": identity_id, "sub": identity_id, "username": username, "status": "used"}])
            return [name for per_mapper in found for mapping in per_mapper for names in mapping.values() for name in names]

        assert mapped(f"{PLACEHOLDER_CLIENT}@clients.auth.globus.org", PLACEHOLDER_CLIENT) == ["ptycho"]
        assert mapped("ada@anl.gov") == ["ada"]
        assert mapped("5b1c5b8e-7f4a-4a55-8a0a-2b3c4d5e6f70@clients.auth.globus.org") == []  # another client
        assert mapped("mallory@anl.gov.evil.example") == []
    finally:
        mapper.stop_watching()


def _pinned_endpoint_version() -> str:
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    [pin] = [d for d in dev if d.startswith("globus-compute-endpoint")]
    return pin.split("==", 1)[1]


def test_tests_run_the_pinned_endpoint_with_the_matching_sdk():
    import globus_compute_endpoint
    import globus_compute_sdk

    version = _pinned_endpoint_version()
    assert globus_compute_endpoint.__version__ == globus_compute_sdk.__version__ == version


def test_containers_install_the_pinned_endpoint():
    version = _pinned_endpoint_version()
    docker = (DEPLOY / "containers" / "Dockerfile.edge").read_text()
    apptainer = (DEPLOY / "containers" / "ptychoflow-hpc.def").read_text()
    assert f"ARG GLOBUS_COMPUTE_VERSION={version}" in docker
    assert f"GLOBUS_COMPUTE_VERSION={version}" in apptainer
    for recipe in (docker, apptainer):
        code = "\n".join(line for line in recipe.splitlines() if not line.lstrip().startswith("#"))
        mentions = re.findall(r"globus-compute-(?:endpoint|sdk)[^\s\"]*", code)
        assert mentions and all("==" in m for m in mentions), mentions
