"""``ptychoflow models``: list, inspect, promote, roll back and export registry versions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from ptychoflow.cli._common import emit, json_option, load, print_json, profile_option, shown
from ptychoflow.names import printable

F = TypeVar("F", bound=Callable[..., Any])


def registry_dir(registry: Path | None, profile_path: Path | None) -> Path:
    """--registry DIR wins; else the profile's <hpc>/registry, where the flows train and promote."""
    if registry is not None:
        return registry
    from ptychoflow.site import SiteLayout

    return SiteLayout.from_profile(load(profile_path)).hpc.registry_dir


def registry_option(command: F) -> F:
    """``--registry DIR``: passed as ``registry``."""
    return click.option("--registry", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Registry directory [default: the profile's <hpc>/registry].")(command)


def registry_options(command: F) -> F:
    """Where the registry is (--registry, else --profile) and --json: what every `models` command takes."""
    return registry_option(profile_option(json_option(command)))


def _open(registry: Path | None, profile_path: Path | None) -> Any:
    """An existing registry (a typo in --registry must not create an empty one)."""
    from ptychoflow.errors import InputError
    from ptychoflow.nn.registry import DB_FILENAME, Registry

    root = registry_dir(registry, profile_path)
    if not (root / DB_FILENAME).exists():
        raise InputError(root, DB_FILENAME, "no model registry here (train a model first: `ptychoflow train`)")
    return Registry(root)


def _version_or_best(registry: Any, version: str | None) -> Any:
    """VERSION (InputError naming the known ones if absent), or best when omitted."""
    found = registry.get(version) if version else registry.best()
    if found is None:
        raise click.ClickException("no best model yet")
    return found


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@click.group()
def models() -> None:
    """Model registry: versions, their quality, and the `best` pointer the edge serves.

    \b
    Examples:
      ptychoflow models list --profile ./site
      ptychoflow models show v0003 --registry ./site/hpc/registry --json
      ptychoflow models promote v0003           # force best to a version
      ptychoflow models rollback                # back to the previous best
      ptychoflow models export v0003 ./edge/model
    """


@models.command("list")
@registry_options
def list_cmd(registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """All versions, oldest first; * marks best."""
    versions = _open(registry, profile_path).list()
    if as_json:
        print_json([_summary(v) for v in versions])
        return
    if not versions:
        click.echo("no models yet")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "version", "parent", "kind", "scans", "val loss", "SSIM", "created")
    for v in versions:
        table.add_row("*" if v.is_best else "", shown(v.version), shown(v.parent or "-"),
                      shown(f"{v.model_kind}/{v.model_config.get('size', '?')}"),
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
def show(version: str | None, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """One version in full (default: best)."""
    data = _version_or_best(_open(registry, profile_path), version).to_json()
    if as_json:
        print_json(data)
        return
    history = data["extra"].pop("history", [])
    for key, value in data.items():
        click.echo(f"{key:>16}: {printable(value)}")
    if history:
        click.echo("         history: " + " ".join(f"{h['val_loss']:.4f}" for h in history))


@models.command("promote")
@click.argument("version")
@registry_options
def promote(version: str, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Make VERSION best regardless of scores (logged as manual)."""
    _open(registry, profile_path).promote(version)
    emit({"best_version": version}, as_json, f"best -> {version}")


@models.command("rollback")
@click.argument("version", required=False)
@registry_options
def rollback(version: str | None, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Point best at VERSION, or at the best before the current one."""
    target = _open(registry, profile_path).rollback(version)
    emit({"best_version": target}, as_json, f"best -> {target} (rolled back)")


@models.command("export")
@click.argument("version", required=False)
@click.argument("out_dir", type=click.Path(file_okay=False))
@registry_options
def export(version: str | None, out_dir: str, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Stage VERSION (default best) as model.onnx + manifest.json + its stitching weight in
    OUT_DIR (edge format)."""
    from ptychoflow.nn.export import stage_version

    chosen = _version_or_best(_open(registry, profile_path), version)
    manifest = stage_version(chosen, out_dir)
    emit({"manifest_path": str(manifest)}, as_json, f"staged {chosen.version} -> {manifest}")
