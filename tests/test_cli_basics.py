"""The CLI as a user meets it: help that teaches, version, doctor, init, clean errors."""

from __future__ import annotations

import json

from conftest import run_cli
from ptychoflow import __version__
from ptychoflow.recon.registry import ENGINE_CHOICES, choose_engine


def test_version_and_help_with_examples():
    assert __version__ in run_cli("--version").stdout
    help_text = run_cli("--help").stdout
    assert "ptychoflow init" in help_text and "beamline" in help_text
    sim_help = run_cli("beamline", "simulate", "--help").stdout
    assert "Examples:" in sim_help and "--rate" in sim_help


def test_doctor_reports_every_component_as_json():
    checks = json.loads(run_cli("doctor", "--json").stdout)
    names = {c["name"] for c in checks}
    assert {"torch", "ptychi", "tike", "cupy", "gpu", "onnxruntime", "edge inference", "globus credentials"} <= names
    assert all(c["status"] in {"ok", "warn", "missing"} and c["detail"] for c in checks)
    by_name = {c["name"]: c for c in checks}
    assert by_name["numpy"]["status"] == "ok"
    assert by_name["edge inference"]["detail"].endswith("CPUExecutionProvider")  # the last resort is always there
    if by_name["gpu"]["status"] == "missing":
        assert "skipped" in by_name["gpu"]["detail"]
    # one row per registered rPIE engine, and what "auto" picks here
    assert {f"rpie {name}" for name in ENGINE_CHOICES} <= names
    auto = choose_engine()
    assert by_name["rpie auto"]["detail"] == f"{auto.engine} on {auto.device}: {auto.reason}"
    assert by_name[f"rpie {auto.engine}"]["status"] == "ok"


def test_doctor_table_shows_install_hints_verbatim(monkeypatch):
    """Square brackets in a hint ('ptychoflow[gpu]') are text, not rich markup."""
    from click.testing import CliRunner

    from ptychoflow.cli.main import cli

    monkeypatch.setenv("COLUMNS", "300")
    table = CliRunner().invoke(cli, ["doctor"]).output
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") >= 4}
    checks = json.loads(CliRunner().invoke(cli, ["doctor", "--json"]).output)  # same process, same state
    for check in checks:
        assert check["detail"] in rows[check["name"]], check


def test_init_then_errors_are_one_clean_line(tmp_path):
    run_cli("init", str(tmp_path / "site"))
    assert (tmp_path / "site" / "ptychoflow.toml").exists()
    again = run_cli("init", str(tmp_path / "site"), check=False)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error:") and "already exists" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_replay_of_a_malformed_scan_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    result = run_cli("beamline", "replay", str(bad), "--out", str(tmp_path / "out"), "--no-stream", check=False)
    assert result.returncode == 2 and f"{bad}: (file)" in result.stderr and "Traceback" not in result.stderr
