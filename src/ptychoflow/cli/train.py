"""``ptychoflow train``: run continual training by hand (what the flow's Train state runs)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from ptychoflow.cli._common import json_option, load, print_json, profile_option
from ptychoflow.cli.models import registry_option
from ptychoflow.nn.options import ContinualOptions
from ptychoflow.profile import Policy, policy_default
from ptychoflow.site import SiteLayout


def _default(knob: str) -> str:
    return f"the profile's policy.{knob}, else {policy_default(knob)}"


@click.command()
@click.option("--scan", "scan_path", type=click.Path(exists=True, dir_okay=False), help="New scan whose pairs are appended first.")
@click.option("--reconstruction", "reconstruction_path", type=click.Path(exists=True, dir_okay=False),
              help="Its rPIE product [default: the simulator truth beside a simulated scan].")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Corpus HDF5 [default: the site's, beside the registry: <hpc>/corpus/corpus.h5].")
@registry_option
@profile_option
@click.option("--model", "model_kind", type=click.Choice(get_args(Policy.model_fields["model"].annotation)), default=None,
              help=f"Network [default: {_default('model')}].")
@click.option("--patch-size", type=click.Choice(["64", "128"]), default=None,
              help=f"Network input size [default: {_default('patch_size')}].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Maximum epochs [default: {_default('train_epochs')}].")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Seconds [default: {_default('train_time_limit_s')}].")
@click.option("--margin", "promote_margin", type=click.FloatRange(min=0), default=None,
              help=f"SSIM margin a candidate must beat best by [default: {_default('promote_margin')}].")
@click.option("--scratch", is_flag=True, help="Do not warm-start from the best model.")
@click.option("--physics-pairs", type=click.IntRange(min=0), default=None,
              help="Pairs made from the probe (textures x far-field physics x Poisson noise) trained on beside the "
                   f"real ones; 0: none [default: {ContinualOptions.physics_pairs}].")
@click.option("--probe-guess", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Before the first scan (no --scan): the expected probe (.npy, a scan with /entry/data/probe_guess, "
                   "or an rPIE product). Reuses the closest model (--reuse-from), else pretrains on physics-made pairs "
                   "seen through it for --time-limit seconds.")
@click.option("--reuse-from", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="Registry of an earlier experiment to reuse a model from (repeatable); with --probe-guess.")
@click.option("--counts-per-frame", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Photons per frame to expect, for pretraining [default: the probe guess's power].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@json_option
def train(scan_path: str | None, reconstruction_path: str | None, corpus_path: Path | None, registry: Path | None,
          profile_path: Path | None, model_kind: str | None, patch_size: str | None, epochs: int | None,
          time_limit_s: float | None, promote_margin: float | None, scratch: bool, physics_pairs: int | None,
          probe_guess: Path | None, reuse_from: tuple[Path, ...], counts_per_frame: float | None, seed: int,
          threads: int | None, as_json: bool) -> None:
    """Append a scan to the corpus, train a candidate (warm start), register it, and promote
    it if it beats the best by the margin; stage model.onnx + manifest.json for the edge.

    Without --registry it trains where the flows do: the profile's <hpc>/registry and
    <hpc>/corpus/corpus.h5, with the profile's policy as the defaults.

    Before the first scan of an experiment, --probe-guess (without --scan) gives the edge a
    model while that scan is acquired: the closest model by probe, energy and pixel size from
    this registry and --reuse-from registries, or one pretrained on physics-made pairs. The
    choice is recorded in the registry (`ptychoflow models show VERSION`).

    \b
    Examples:
      ptychoflow train --profile ./site --scan site/hpc/scans/scan_0001.h5 --reconstruction site/hpc/products/scan_0001/scan_0001.recon.h5
      ptychoflow train --registry ./models --scan site/acquisition/scan_0002.h5 --epochs 5 --time-limit 60
    """
    from ptychoflow.nn.start import start_or_train

    knobs = {}  # unset: the profile's policy when there is a profile, else ContinualOptions' (the code's Policy)
    if registry is None or profile_path is not None:
        profile = load(profile_path)
        registry = registry or SiteLayout.from_profile(profile).hpc.registry_dir
        policy = profile.policy
        knobs = {"model_kind": policy.model, "patch_size": policy.patch_size, "epochs": policy.train_epochs,
                 "time_limit_s": policy.train_time_limit_s, "promote_margin": policy.promote_margin}
    given = {"model_kind": model_kind, "patch_size": int(patch_size) if patch_size else None, "epochs": epochs,
             "time_limit_s": time_limit_s, "promote_margin": promote_margin}
    knobs.update({name: value for name, value in given.items() if value is not None})
    if probe_guess is None and reuse_from:
        raise click.UsageError("--reuse-from needs --probe-guess (the beam to match)")
    if probe_guess is not None and scan_path is not None:
        raise click.UsageError("--probe-guess is for before the first scan; with --scan, the scan's reconstruction gives the probe")
    if physics_pairs is not None:
        knobs["physics_pairs"] = physics_pairs
    result = start_or_train(ContinualOptions(
        registry_dir=registry, corpus_path=corpus_path, scan_path=scan_path, reconstruction_path=reconstruction_path,
        warm_start=not scratch, seed=seed, threads=threads, probe_guess_path=probe_guess,
        reuse_from_dirs=list(reuse_from), counts_per_frame=counts_per_frame, **knobs))
    if as_json:
        print_json(result)
        return
    if result.get("origin") == "reused":
        click.echo(f"{result['version']}: reused {result['closest']['registry']} {result['closest']['version']} "
                   f"(beam distance {result['closest']['distance']:.3f}); best is {result['best_version']}")
        click.echo(f"edge artifact: {result['manifest_path']}")
        return
    verdict = "promoted" if result["promoted"] else f"not promoted (best stays {result['best_version']})"
    click.echo(f"{result['version']}: val loss {result['val_loss']:.4f}, SSIM {result['ssim']}, "
               f"{result['epochs_run']} epochs ({result['stopped_by']}), {verdict}")
    click.echo(f"edge artifact: {result['manifest_path']}")
