"""The systemd units, read by systemd's own parser (systemd-analyze verify) and by the CLI
they start: one supervisor for the engine worker, start limits, state where the units may
write, and a unit for the dashboard."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from console_script import CONSOLE_SCRIPT, console_env, needs_console_script
from ptychoflow import profile as profile_module
from ptychoflow.profile import load_profile, write_local_profile

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
INSTALLED = "/opt/ptychoflow/venv/bin/ptychoflow"
SERVICES = sorted(UNITS.glob("*.service"))
SYSTEM_STATE_DIR = profile_module.SYSTEM_STATE_DIR  # before any test moves it


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def _command(path: Path) -> list[str]:
    """The ptychoflow arguments of the unit's ExecStart, with the profile variable expanded."""
    words = shlex.split(_unit(path)["Service"]["ExecStart"].replace("${PTYCHOFLOW_PROFILE}", "PROFILE"))
    assert words[0] == INSTALLED
    return words[1:]


def test_every_service_we_run_has_a_unit():
    assert {p.name for p in SERVICES} == {f"ptychoflow-{name}.service" for name in ("engine", "watch", "dashboard", "edge")}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@needs_console_script
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_systemd_accepts_the_unit_without_a_warning(unit, tmp_path):
    """systemd's parser: an unknown or misspelt key is only a warning, so any output fails."""
    local = tmp_path / unit.name
    local.write_text(unit.read_text().replace(INSTALLED, str(CONSOLE_SCRIPT)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr


@needs_console_script
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_the_cli_accepts_the_units_command(unit):
    """Every option a unit passes exists: `ptychoflow ARGS --help` parses them."""
    args = _command(unit)
    result = subprocess.run([str(CONSOLE_SCRIPT), *args, "--help"], capture_output=True, text=True, timeout=120,
                            env=console_env())
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_every_unit_runs_confined_with_start_limits(unit):
    parsed = _unit(unit)
    service = parsed["Service"]
    assert service["User"] == "ptycho" and service["UMask"] == "0077" and service["ProtectSystem"] == "strict"
    assert service["EnvironmentFile"] == "/etc/ptychoflow/ptychoflow.env"
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    assert int(parsed["Unit"]["StartLimitBurst"]) >= 1 and int(parsed["Unit"]["StartLimitIntervalSec"]) > 0


def test_only_the_engine_unit_starts_the_engine_worker():
    """Never both: the other units that could start a worker are told not to."""
    commands = {unit.name: _command(unit) for unit in SERVICES}
    assert commands["ptychoflow-engine.service"][:3] == ["engine", "serve", "--wait"]  # takes over, never fights
    for name in ("ptychoflow-watch.service", "ptychoflow-dashboard.service"):
        assert "--no-engine" in commands[name], name
    assert _unit(UNITS / "ptychoflow-engine.service")["Service"]["Restart"] == "on-failure"


def test_a_profile_in_etc_keeps_its_state_where_the_units_may_write(tmp_path, monkeypatch):
    etc, var_lib = tmp_path / "etc", tmp_path / "var" / "lib" / "ptychoflow"
    monkeypatch.setattr(profile_module, "SYSTEM_CONFIG_DIR", etc)
    monkeypatch.setattr(profile_module, "SYSTEM_STATE_DIR", var_lib)
    write_local_profile(etc / "ptychoflow")
    assert load_profile(etc / "ptychoflow").state_path == var_lib / "state"
    write_local_profile(tmp_path / "home" / "site")  # anywhere else: beside the profile, as before
    assert load_profile(tmp_path / "home" / "site").state_path == tmp_path / "home" / "site" / "state"
    # and that is the directory every unit may write: StateDirectory= names /var/lib/<it>
    for unit in SERVICES:
        service = _unit(unit)["Service"]
        assert Path("/var/lib") / service["StateDirectory"] == SYSTEM_STATE_DIR, unit.name
        assert str(SYSTEM_STATE_DIR) in service["ReadWritePaths"].split(), unit.name
