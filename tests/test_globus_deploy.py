"""deploy/: each endpoint directory is complete and documents exactly the variables its
template reads; the service units and container recipes are well formed.

Loading, rendering and validating the endpoint configs is done by the real
globus-compute-endpoint package, in test_globus_endpoint_configs.py."""

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
def test_template_variables_are_exactly_the_documented_ones(directory):
    doc = documented(directory)
    source = (directory / "user_config_template.yaml.j2").read_text()
    used = meta.find_undeclared_variables(env_for(directory).parse(source))
    assert used == set(doc["variables"]) | {"_GC"}  # _GC: the endpoint's reserved variables
    for name in doc["variables"]:
        assert name in source.split("-#}")[0], f"{name} not described in the template's header comment"


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
