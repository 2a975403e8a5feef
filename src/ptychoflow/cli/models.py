"""``ptychoflow models``: list, inspect, promote, roll back and export registry versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from ptychoflow import clock
from ptychoflow.cli._common import console, emit, json_option, load, print_json, profile_args, profile_option, shown
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
    from ptychoflow.errors import InputError

    found = registry.get(version) if version else registry.best()
    if found is None:
        raise InputError(registry.db_path, "best", "no best model yet; name a version")
    return found


def best_or_set_version(profile: Any, assignments: tuple[str, ...]) -> str:
    """The version a deploy_model run ships: ``--set version=V``, else the registry's best."""
    from ptychoflow.flow_overrides import parse_assignment

    for text in reversed(assignments):
        parts, value = parse_assignment(text)
        if parts == ["version"]:
            return value
    from ptychoflow.site import SiteLayout

    return _version_or_best(_open(SiteLayout.from_profile(profile).hpc.registry_dir, None), None).version


def ensure_staged(profile: Any, version: str) -> None:
    """Stage VERSION's edge artifact where deploy_model ships it from, if it is not there yet
    (a version that was best long ago, chosen by a rollback). Only a registry on this disk."""
    from ptychoflow.nn.export import stage_version
    from ptychoflow.nn.registry import DB_FILENAME, Registry
    from ptychoflow.site import SiteLayout, staged_dir

    root = SiteLayout.from_profile(profile).hpc.registry_dir
    target = staged_dir(root, version)
    if (root / DB_FILENAME).exists() and not target.exists():
        stage_version(Registry(root).get(version), target)


def _edge_serving(profile_path: Path | None) -> str | None:
    """The version the profile's edge model directory holds (None if none, or not on this disk)."""
    from ptychoflow.artifact import read_manifest
    from ptychoflow.errors import PtychoflowError
    from ptychoflow.site import SiteLayout

    try:
        return read_manifest(SiteLayout.from_profile(load(profile_path)).edge.model_dir).version
    except (PtychoflowError, OSError):
        return None


def _best_moved(target: str, how: str, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Report a moved best pointer, and what the edge serves: moving the pointer ships nothing."""
    serving = _edge_serving(profile_path) if registry is None else None
    hint = f"ptychoflow flows run deploy_model --set version={target} --wait{profile_args(profile_path)}"
    lines = [f"best -> {target}{how}"]
    if serving != target:
        edge = f"the edge still serves {serving}" if serving else "the edge does not serve it yet"
        lines.append(f"note: {edge}; the pointer moved, no model was shipped. To serve {target}:\n  {hint}")
    emit({"best_version": target, "edge_serving": serving, "deploy_command": hint}, as_json, "\n".join(lines))


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@click.group()
def models() -> None:
    """Model registry: versions, their quality, and the `best` pointer the flows ship to the edge.

    \b
    Examples:
      ptychoflow models list --profile site/
      ptychoflow models show --json             # best, in full
      ptychoflow models promote v0002           # force best to a version
      ptychoflow models rollback                # back to the previous best
      ptychoflow models export ./model-out      # best as the edge loads it (model.onnx, manifest.json)
    """


@models.command("list")
@registry_options
def list_cmd(registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """All versions, oldest first; * marks best. A profile that has trained nothing yet has none.

    \b
    Example:
      ptychoflow models list --json
    """
    from ptychoflow.nn.registry import DB_FILENAME

    root = registry_dir(registry, profile_path)
    versions = [] if registry is None and not (root / DB_FILENAME).exists() else _open(registry, profile_path).list()
    if as_json:
        print_json([_summary(v) for v in versions])
        return
    if not versions:
        click.echo(f"no models yet in {root} (the first training of a flow run, or `ptychoflow train`, adds one)")
        return
    from rich.table import Table

    table = Table("", "version", "parent", "kind", "scans", "val loss", "SSIM", "created")
    for v in versions:
        table.add_row("*" if v.is_best else "", shown(v.version), shown(v.parent or "-"),
                      shown(f"{v.model_kind}/{v.model_config.get('size', '?')}"),
                      str(len(v.scans_seen)), _fmt(v.val_loss), _fmt(v.ssim, ".3f"), clock.text(v.created))
    console().print(table)


def _summary(v) -> dict:
    data = v.to_json()
    data["created"] = clock.iso(v.created)
    data.get("extra", {}).pop("history", None)
    return data


@models.command("show")
@click.argument("version", required=False)
@registry_options
def show(version: str | None, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """One version in full (default: best).

    \b
    Example:
      ptychoflow models show v0001
    """
    chosen = _version_or_best(_open(registry, profile_path), version)
    data = {**chosen.to_json(), "created": clock.iso(chosen.created)}
    if as_json:
        print_json(data)
        return
    history = data["extra"].pop("history", [])
    data["created"] = clock.text(chosen.created)
    for key, value in data.items():
        click.echo(f"{key:>16}: {printable(value)}")
    if history:
        click.echo("         history: " + " ".join(f"{h['val_loss']:.4f}" for h in history))


@models.command("promote")
@click.argument("version")
@registry_options
def promote(version: str, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Make VERSION best regardless of scores (logged as manual). Ships nothing: it says how.

    \b
    Example:
      ptychoflow models promote v0002
    """
    _open(registry, profile_path).promote(version)
    _best_moved(version, "", registry, profile_path, as_json)


@models.command("rollback")
@click.argument("version", required=False)
@registry_options
def rollback(version: str | None, registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Point best at VERSION, or at the best before the current one. Ships nothing: it says how.

    \b
    Example:
      ptychoflow models rollback
    """
    target = _open(registry, profile_path).rollback(version)
    _best_moved(target, " (rolled back)", registry, profile_path, as_json)


@models.command("export")
@click.argument("target", nargs=-1, required=True, metavar="[VERSION] OUT_DIR")
@registry_options
def export(target: tuple[str, ...], registry: Path | None, profile_path: Path | None, as_json: bool) -> None:
    """Stage VERSION (default: best) in OUT_DIR as the edge loads it: model.onnx, manifest.json
    and its stitching weight.

    \b
    Examples:
      ptychoflow models export ./model-out
      ptychoflow models export v0001 ./model-v0001
    """
    from ptychoflow.nn.export import stage_version

    if len(target) > 2:
        raise click.UsageError(f"expected [VERSION] OUT_DIR, got {len(target)} arguments")
    version, out_dir = (None, target[0]) if len(target) == 1 else target
    chosen = _version_or_best(_open(registry, profile_path), version)
    manifest = stage_version(chosen, out_dir)
    emit({"version": chosen.version, "manifest_path": str(manifest)}, as_json, f"staged {chosen.version} -> {manifest}")
