"""Each default in one place: the profile's Policy. The flow schemas, the flows' remote
functions and the option dataclasses either carry no default or carry exactly the code's."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest

from ptychoflow.flow_inputs import reconstruct_and_train_input, reconstruct_input
from ptychoflow.nn.continual import validate_best
from ptychoflow.nn.options import TRAIN_WIDTH, ContinualOptions, ModelConfig, TrainConfig
from ptychoflow.profile import LOCAL_PROFILE_TEMPLATE, Edge, Policy, default_of, load_profile, policy_default, write_local_profile
from ptychoflow.recon.base import RpieOptions
from ptychoflow.resources import flows_dir

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = sorted(flows_dir().glob("*.schema.json"))
DEFINITIONS = sorted(p for p in flows_dir().glob("*.json") if not p.name.endswith(".schema.json"))
POLICY_DEFAULTS = Policy().model_dump()
POLICY_READ = re.compile(r"^\$\.policy\.(\w+)$")


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every JSON object in a document, with its location."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def _policy_knobs(schema: dict) -> dict[str, dict]:
    return schema.get("properties", {}).get("policy", {}).get("properties", {})


def _function_kwargs_from_policy() -> list[tuple[str, str, str, str]]:
    """(flow, function, keyword, policy knob) for every task kwarg a flow fills from $.policy."""
    found = []
    for path in DEFINITIONS:
        for _, node in _walk(json.loads(path.read_text())):
            if "function_id.$" not in node or "kwargs" not in node:
                continue
            function = node["function_id.$"].rsplit(".", 1)[-1]
            for key, value in node["kwargs"].items():
                match = POLICY_READ.match(str(value)) if key.endswith(".$") else None
                if match:
                    found.append((path.stem, function, key[:-2], match.group(1)))
    return found


def _remote_function(name: str):
    spec = importlib.util.spec_from_file_location(f"defaults_{name}", ROOT / "functions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _effective_default(function: str, keyword: str) -> Any:
    """The value a remote function uses when the flow leaves `keyword` out."""
    if function == "train":  # train(**kwargs) -> ContinualOptions(**kwargs)
        return {f.name: f.default for f in dataclasses.fields(ContinualOptions)}[keyword]
    if function == "validate":  # validate(**kwargs) -> validate_best(**kwargs)
        return inspect.signature(validate_best).parameters[keyword].default
    parameter = inspect.signature(_remote_function(function)).parameters[keyword]
    if function == "reconstruct" and parameter.default is None:  # None: the engines' own default
        if keyword == "engine":
            from ptychoflow.recon.api import reconstruct

            return inspect.signature(reconstruct).parameters["engine"].default
        if hasattr(RpieOptions, keyword):
            return getattr(RpieOptions, keyword)
        return policy_default(keyword)  # not an rPIE setting (export_formats): None means the policy's default
    return parameter.default


@pytest.mark.parametrize("schema_path", SCHEMAS, ids=lambda p: p.stem)
def test_every_schema_default_is_the_codes(schema_path: Path) -> None:
    """A schema default (best avoided: the Globus Flows service never applies them) may only
    sit on a policy knob and must equal Policy's."""
    schema = json.loads(schema_path.read_text())
    for location, node in _walk(schema):
        if "default" not in node:
            continue
        knob = re.fullmatch(r"/properties/policy/properties/(\w+)", location)
        assert knob, f"{schema_path.name}{location}: a default outside the policy; send the value from flow_inputs"
        assert node["default"] == POLICY_DEFAULTS[knob.group(1)], f"{schema_path.name}{location}"


@pytest.mark.parametrize("schema_path", SCHEMAS, ids=lambda p: p.stem)
def test_every_schema_policy_knob_is_a_policy_field_and_required(schema_path: Path) -> None:
    policy = json.loads(schema_path.read_text()).get("properties", {}).get("policy")
    if policy is None:
        return
    knobs = set(policy["properties"])
    assert knobs <= set(Policy.model_fields), f"not in Policy: {knobs - set(Policy.model_fields)}"
    assert set(policy["required"]) == knobs, "every knob is required: the service applies no defaults"
    for knob, subschema in policy["properties"].items():  # the code's default is a value the flow accepts
        jsonschema.validate(POLICY_DEFAULTS[knob], subschema)


def test_every_policy_knob_a_flow_reads_is_in_its_schema_and_sent() -> None:
    reads = _function_kwargs_from_policy()
    assert {knob for *_, knob in reads} >= {"iterations", "ssim_tolerance", "promote_margin", "train_epochs"}
    for flow, _, _, knob in reads:
        schema = json.loads((flows_dir() / f"{flow}.schema.json").read_text())
        assert knob in _policy_knobs(schema) and knob in schema["properties"]["policy"]["required"], (flow, knob)


@pytest.mark.parametrize("flow, function, keyword, knob", _function_kwargs_from_policy(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_remote_function_defaults_are_the_policys(flow: str, function: str, keyword: str, knob: str) -> None:
    """Called without the keyword (by hand, or by a flow someone else wrote), a remote
    function behaves as the profile's default policy."""
    assert _effective_default(function, keyword) == POLICY_DEFAULTS[knob]


def test_flow_inputs_send_the_profiles_policy_and_it_validates(tmp_path: Path) -> None:
    write_local_profile(tmp_path)
    path = tmp_path / "ptychoflow.toml"
    path.write_text(path.read_text().replace("promote_margin = 0.005", "promote_margin = 0.02")
                    .replace("iterations = 100", "iterations = 7"))
    profile = load_profile(path)
    profile.functions.update({n: "id" for n in ("reconstruct", "validate", "train", "activate")})
    for flow, body in (("reconstruct_and_train", reconstruct_and_train_input(profile, "scan_0001.h5")),
                       ("reconstruct", reconstruct_input(profile, "scan_0001.h5"))):
        schema = json.loads((flows_dir() / f"{flow}.schema.json").read_text())
        jsonschema.validate(body, schema)
        assert set(body["policy"]) == set(_policy_knobs(schema))
        assert body["policy"]["iterations"] == 7
    assert reconstruct_and_train_input(profile, "scan_0001.h5")["policy"]["promote_margin"] == 0.02


def test_option_dataclasses_take_the_policys_defaults() -> None:
    assert (RpieOptions().iterations, RpieOptions().batch_size, RpieOptions().alpha) == (
        POLICY_DEFAULTS["iterations"], POLICY_DEFAULTS["batch_size"], POLICY_DEFAULTS["alpha"])
    assert (ModelConfig().kind, ModelConfig().size) == (POLICY_DEFAULTS["model"], POLICY_DEFAULTS["patch_size"])
    assert (TrainConfig().epochs, TrainConfig().time_limit_s) == (POLICY_DEFAULTS["train_epochs"],
                                                                  POLICY_DEFAULTS["train_time_limit_s"])
    options = ContinualOptions(registry_dir="site/hpc/registry")
    # the network is ModelConfig's but narrower: TRAIN_WIDTH, chosen for CPUs (nn.options)
    assert options.promote_margin == POLICY_DEFAULTS["promote_margin"]
    assert options.model == ModelConfig(width=TRAIN_WIDTH) and TRAIN_WIDTH < ModelConfig().width
    assert options.training(augment=False) == TrainConfig()
    assert options.corpus == Path("site/hpc/corpus/corpus.h5")  # the site layout's, not one of its own


def test_the_profile_template_writes_the_codes_policy() -> None:
    written = tomllib.loads(LOCAL_PROFILE_TEMPLATE)["policy"]
    assert written == POLICY_DEFAULTS


def test_edge_service_defaults_are_the_profiles() -> None:
    from ptychoflow_edge.config import PROFILE_SETTINGS, EdgeConfig

    config = EdgeConfig(path=Path("edge"))
    assert set(PROFILE_SETTINGS) <= set(Edge.model_fields)
    for name in PROFILE_SETTINGS:
        assert getattr(config, name) == default_of(Edge, name), name
