"""``ptychoflow models``: list, inspect, promote, roll back and export registry versions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

REGISTRY_SUBDIR = "models"


def registry_dir(registry: str | None, profile: str | None) -> Path:
    """--registry DIR wins; else <profile state_dir>/models (profile from --profile, env or cwd)."""
    if registry:
        return Path(registry)
    from ptychoflow.profile import find_profile

    return find_profile(profile).state_path / REGISTRY_SUBDIR


def registry_options(func):
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--profile", "profile", default=None, help="Profile file or directory (registry under its state_dir).")(func)
    return click.option("--registry", "registry", default=None, type=click.Path(file_okay=False), help="Registry directory.")(func)


def _open(registry: str | None, profile: str | None):
    """An existing registry (a typo in --registry must not create an empty one)."""
    from ptychoflow.errors import InputError
    from ptychoflow.nn.registry import DB_FILENAME, Registry

    root = registry_dir(registry, profile)
    if not (root / DB_FILENAME).exists():
        raise InputError(root, DB_FILENAME, "no model registry here (train a model first: `ptychoflow train`)")
    return Registry(root)


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@click.group()
def models() -> None:
    """Model registry: versions, their quality, and the `best` pointer the edge serves.

    \b
    Examples:
      ptychoflow models list --profile ./site
      ptychoflow models show v0003 --registry ./site/state/models --json
      ptychoflow models promote v0003           # force best to a version
      ptychoflow models rollback                # back to the previous best
      ptychoflow models export v0003 ./edge/model
    """


@models.command("list")
@registry_options
def list_cmd(registry: str | None, profile: str | None, as_json: bool) -> None:
    """All versions, oldest first; * marks best."""
    versions = _open(registry, profile).list()
    if as_json:
        click.echo(json.dumps([_summary(v) for v in versions], indent=2))
        return
    if not versions:
        click.echo("no models yet")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "version", "parent", "kind", "scans", "val loss", "SSIM", "created")
    for v in versions:
        table.add_row("*" if v.is_best else "", v.version, v.parent or "-", f"{v.model_kind}/{v.model_config['size']}",
                      str(len(v.scans_seen)), _fmt(v.val_loss), _fmt(v.ssim, ".3f"),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created)))
    Console().print(table)


def _summary(v) -> dict:
    data = v.to_json()
    data.get("extra", {}).pop("history", None)
    return data


@models.command("show")
@click.argument("version", required=False)
@registry_options
def show(version: str | None, registry: str | None, profile: str | None, as_json: bool) -> None:
    """One version in full (default: best)."""
    reg = _open(registry, profile)
    v = reg.get(version) if version else reg.best()
    if v is None:
        raise click.ClickException("no best model yet")
    data = v.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    history = data["extra"].pop("history", [])
    for key, value in data.items():
        click.echo(f"{key:>16}: {value}")
    if history:
        click.echo("         history: " + " ".join(f"{h['val_loss']:.4f}" for h in history))


@models.command("promote")
@click.argument("version")
@registry_options
def promote(version: str, registry: str | None, profile: str | None, as_json: bool) -> None:
    """Make VERSION best regardless of scores (logged as manual)."""
    _open(registry, profile).promote(version)
    click.echo(json.dumps({"best_version": version}) if as_json else f"best -> {version}")


@models.command("rollback")
@click.argument("version", required=False)
@registry_options
def rollback(version: str | None, registry: str | None, profile: str | None, as_json: bool) -> None:
    """Point best at VERSION, or at the best before the current one."""
    target = _open(registry, profile).rollback(version)
    click.echo(json.dumps({"best_version": target}) if as_json else f"best -> {target} (rolled back)")


@models.command("export")
@click.argument("version", required=False)
@click.argument("out_dir", type=click.Path(file_okay=False))
@registry_options
def export(version: str | None, out_dir: str, registry: str | None, profile: str | None, as_json: bool) -> None:
    """Stage VERSION (default best) as model.onnx + manifest.json + its stitching weight in
    OUT_DIR (edge format)."""
    from ptychoflow.nn.export import stage_version

    reg = _open(registry, profile)
    v = reg.get(version) if version else reg.best()
    if v is None:
        raise click.ClickException("no best model yet")
    manifest = stage_version(v, out_dir)
    click.echo(json.dumps({"manifest_path": str(manifest)}) if as_json else f"staged {v.version} -> {manifest}")
