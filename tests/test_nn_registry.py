import json

import pytest
import torch
from click.testing import CliRunner

from ptychoflow.errors import InputError
from ptychoflow.fs import sha256_file
from ptychoflow.nn.checkpoint import load_model, save_checkpoint
from ptychoflow.nn.models import ModelConfig, build_model
from ptychoflow.nn.registry import Registry

torch.set_num_threads(1)
TINY = ModelConfig("ptychonn2", 64, width=4)


def _add(reg: Registry, ssim: float, parent=None) -> str:
    version = reg.next_version()
    checkpoint = save_checkpoint(reg.version_dir(version) / "checkpoint.pt", build_model(TINY), TINY, {})
    reg.register(version, parent=parent, model_config=TINY.to_json(), preprocessing={}, scans_seen=["a"],
                 val_loss=0.1, ssim=ssim, checkpoint_path=checkpoint)
    return version


def test_best_moves_only_past_the_margin_and_rolls_back(tmp_path):
    reg = Registry(tmp_path)
    v1 = _add(reg, 0.40)
    assert reg.promote_if_better(v1, 0.40, None, 0.01) and reg.best().version == v1
    v2 = _add(reg, 0.405, v1)
    assert not reg.promote_if_better(v2, 0.405, 0.40, 0.01) and reg.best().version == v1
    v3 = _add(reg, 0.45, v1)
    assert reg.promote_if_better(v3, 0.45, 0.40, 0.01) and reg.best().version == v3
    assert reg.rollback() == v1 and reg.best().version == v1
    reg.rollback(v2)
    assert reg.best().version == v2
    assert [v.version for v in reg.list()] == [v1, v2, v3]
    assert reg.get(v3).parent == v1 and reg.get(v3).checkpoint_path.endswith("checkpoint.pt")
    assert [e["kind"] for e in reg.events()].count("rejected") == 1
    with pytest.raises(InputError, match="version: no version 'v0099'"):
        reg.get("v0099")


def test_corrupt_checkpoint_is_one_clear_line(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", build_model(TINY), TINY, {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"ck\.pt: \(file\): not a readable checkpoint") as info:
        load_model(path)
    assert "\n" not in str(info.value)
    other = ModelConfig("ptychonn2", 64, width=8)
    save_checkpoint(tmp_path / "wrong.pt", build_model(other), TINY, {})  # weights do not fit the config
    with pytest.raises(InputError, match=r"wrong\.pt: state_dict: does not fit"):
        load_model(tmp_path / "wrong.pt")
    torch.save({"format": 1}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match=r"partial\.pt: model_config: missing field"):
        load_model(tmp_path / "partial.pt")


def test_cli_list_show_promote_rollback_export(tmp_path):
    from ptychoflow.cli.models import models
    from ptychoflow.nn.export import export_onnx

    reg = Registry(tmp_path / "reg")
    v1 = _add(reg, 0.3)
    reg.promote(v1)
    v2 = _add(reg, 0.5, v1)
    onnx = export_onnx(build_model(TINY), TINY, reg.version_dir(v2) / "model.onnx")
    with reg._db() as conn:  # noqa: SLF001 - give v2 its ONNX file (and its hash, as training records it)
        conn.execute("UPDATE versions SET onnx_path=?, onnx_sha256=? WHERE version=?",
                      (str(onnx.relative_to(reg.root)), sha256_file(onnx), v2))
    runner = CliRunner()
    base = ["--registry", str(reg.root)]
    listed = json.loads(runner.invoke(models, ["list", *base, "--json"]).output)
    assert [(v["version"], v["is_best"]) for v in listed] == [(v1, True), (v2, False)]
    assert runner.invoke(models, ["promote", v2, *base]).exit_code == 0
    assert json.loads(runner.invoke(models, ["show", *base, "--json"]).output)["version"] == v2
    out = runner.invoke(models, ["export", v2, str(tmp_path / "edge"), *base, "--json"])
    assert out.exit_code == 0, out.output
    from ptychoflow.artifact import verified_model_bytes

    manifest, _ = verified_model_bytes(tmp_path / "edge")
    assert manifest.version == v2 and manifest.input_shape == [1, 64, 64]
    assert json.loads(runner.invoke(models, ["rollback", *base, "--json"]).output)["best_version"] == v1
    assert "v0001" in runner.invoke(models, ["list", *base]).output
