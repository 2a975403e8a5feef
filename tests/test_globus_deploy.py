"""deploy/: every YAML loads, every endpoint template renders with its documented variables
(and only those), a missing required variable fails, and the service units are well formed."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import jinja2
import jsonschema
import pytest
import yaml
from jinja2 import meta

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ENDPOINTS = sorted(p for p in (DEPLOY / "compute-endpoints").iterdir() if p.is_dir())
TEMPLATES = sorted(DEPLOY.rglob("*.j2"))


def env_for(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined)


def documented(directory: Path) -> dict:
    return yaml.safe_load((directory / "variables.yaml").read_text())


def as_sent(variables: dict) -> dict:
    """Globus Compute JSON-encodes user strings before rendering; numbers stay numbers."""
    return {name: json.dumps(spec["example"]) if isinstance(spec["example"], str) else spec["example"] for name, spec in variables.items()}


def render(directory: Path, omit: str | None = None) -> str:
    doc = documented(directory)
    context = {**doc.get("reserved", {}), **as_sent(doc["variables"])}
    context.pop(omit, None)
    return env_for(directory).get_template("user_config_template.yaml.j2").render(context)


def test_four_endpoints_each_with_the_full_set():
    assert {p.name for p in ENDPOINTS} == {"hpc-slurm", "polaris-pbs", "workstation", "edge"}
    for directory in ENDPOINTS:
        for name in ("config.yaml", "user_config_template.yaml.j2", "user_config_schema.json", "variables.yaml"):
            assert (directory / name).is_file(), f"{directory.name}/{name} missing"
    assert TEMPLATES and all(t.parent in ENDPOINTS for t in TEMPLATES)


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_loads(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_manager_config_is_a_template_capable_endpoint(directory):
    config = yaml.safe_load((directory / "config.yaml").read_text())
    assert config["multi_user"] is True and config["public"] is False and config["display_name"]
    assert "engine" not in config  # the engine lives in the user template


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_template_variables_are_exactly_the_documented_ones(directory):
    doc = documented(directory)
    source = (directory / "user_config_template.yaml.j2").read_text()
    used = meta.find_undeclared_variables(env_for(directory).parse(source))
    assert used == set(doc["variables"]) | set(doc.get("reserved", {}))
    for name in doc["variables"]:
        assert name in source.split("-#}")[0], f"{name} not described in the template's header comment"


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_template_renders_to_an_engine_with_gpus_and_worker_init(directory):
    config = yaml.safe_load(render(directory))
    engine = config["engine"]
    assert engine["type"] == "GlobusComputeEngine"
    assert engine["available_accelerators"]
    assert "activate" in engine["provider"]["worker_init"]


def test_python_version_of_the_submitter_selects_the_environment():
    slurm = yaml.safe_load(render(DEPLOY / "compute-endpoints" / "hpc-slurm"))
    assert "/py3.11/bin/activate" in slurm["engine"]["provider"]["worker_init"]
    assert slurm["engine"]["provider"]["account"] == "PTYCHO_ALLOC"
    pbs = yaml.safe_load(render(DEPLOY / "compute-endpoints" / "polaris-pbs"))
    assert pbs["engine"]["provider"]["scheduler_options"] == "#PBS -l filesystems=home:eagle:grand"


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_missing_required_variable_fails_to_render(directory):
    required = [name for name, spec in documented(directory)["variables"].items() if spec["required"]]
    for name in required + ["user_runtime"]:
        with pytest.raises(jinja2.UndefinedError):
            render(directory, omit=name)


@pytest.mark.parametrize("directory", ENDPOINTS, ids=lambda p: p.name)
def test_schema_accepts_examples_and_matches_required(directory):
    schema = json.loads((directory / "user_config_schema.json").read_text())
    variables = documented(directory)["variables"]
    jsonschema.validate({name: spec["example"] for name, spec in variables.items()}, schema)
    assert set(schema.get("required", [])) == {name for name, spec in variables.items() if spec["required"]}
    assert set(schema["properties"]) == set(variables)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"not_a_variable": 1}, schema)


def test_container_recipes_pin_the_python_and_install_extras():
    apptainer = (DEPLOY / "containers" / "ptychoflow-hpc.def").read_text()
    assert "Bootstrap: docker" in apptainer and "PYTHON_VERSION=" in apptainer and "[gpu" in apptainer
    for section in ("%post", "%environment", "%runscript", "%test"):
        assert section in apptainer
    docker = (DEPLOY / "containers" / "Dockerfile.edge").read_text()
    assert "ARG PYTHON_VERSION" in docker and "[edge-gpu]" in docker and "USER ptycho" in docker


def test_readme_mentions_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.name in readme, f"deploy/README.md does not mention {path.name}"
