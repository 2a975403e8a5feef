"""``ptychoflow train``: run continual training by hand (what the flow's Train state runs)."""

from __future__ import annotations

import json

import click

from ptychoflow.cli.models import registry_dir


@click.command()
@click.option("--scan", "scan_path", type=click.Path(exists=True, dir_okay=False), help="New scan whose pairs are appended first.")
@click.option("--reconstruction", "reconstruction_path", type=click.Path(exists=True, dir_okay=False),
              help="Its rPIE product (default: the simulator truth beside a simulated scan).")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), help="Corpus HDF5 (default: the site's, beside the registry: <hpc>/corpus/corpus.h5).")
@click.option("--registry", default=None, type=click.Path(file_okay=False), help="Registry directory.")
@click.option("--profile", default=None, help="Profile (registry under its state_dir; policy gives the defaults).")
@click.option("--model", "model_kind", type=click.Choice(["ptychonn", "ptychonn2"]), default=None)
@click.option("--patch-size", type=click.Choice(["64", "128"]), default=None)
@click.option("--epochs", type=int, default=None, help="Maximum epochs (default: the profile's policy).")
@click.option("--time-limit", "time_limit_s", type=float, default=None, help="Seconds (default: the profile's policy).")
@click.option("--margin", "promote_margin", type=float, default=None, help="SSIM margin to promote.")
@click.option("--scratch", is_flag=True, help="Do not warm-start from the best model.")
@click.option("--seed", type=int, default=0)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True)
def train(scan_path, reconstruction_path, corpus_path, registry, profile, model_kind, patch_size, epochs,
          time_limit_s, promote_margin, scratch, seed, threads, as_json) -> None:
    """Append a scan to the corpus, train a candidate (warm start), register it, and promote
    it if it beats the best by the margin; stage model.onnx + manifest.json for the edge.

    \b
    Example:
      ptychoflow train --registry ./models --scan acq/scan_0001.h5 --epochs 20 --time-limit 300
    """
    from ptychoflow.nn.continual import continual_train
    from ptychoflow.nn.options import ContinualOptions

    args = {}  # unset knobs: the profile's policy, else ContinualOptions' defaults (the code's Policy)
    if registry is None:
        from ptychoflow.profile import find_profile

        policy = find_profile(profile).policy
        args = {"model_kind": policy.model, "patch_size": policy.patch_size, "epochs": policy.train_epochs,
                "time_limit_s": policy.train_time_limit_s, "promote_margin": policy.promote_margin}
    given = {"model_kind": model_kind, "patch_size": int(patch_size) if patch_size else None, "epochs": epochs,
             "time_limit_s": time_limit_s, "promote_margin": promote_margin}
    args.update({k: v for k, v in given.items() if v is not None})
    result = continual_train(ContinualOptions(
        registry_dir=registry_dir(registry, profile), corpus_path=corpus_path, scan_path=scan_path,
        reconstruction_path=reconstruction_path, warm_start=not scratch, seed=seed, threads=threads, **args))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    verdict = "promoted" if result["promoted"] else f"not promoted (best stays {result['best_version']})"
    click.echo(f"{result['version']}: val loss {result['val_loss']:.4f}, SSIM {result['ssim']}, "
               f"{result['epochs_run']} epochs ({result['stopped_by']}), {verdict}")
    click.echo(f"edge artifact: {result['manifest_path']}")
